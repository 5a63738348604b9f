"""HTTPS served by Wharf itself: certificates from files, reloaded when they change, and
client certificates (mTLS) as an identity. Certificates are made here with `cryptography`."""

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import time

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import WHARF, assert_config_refused, start_wharf


def make_cert(cn, issuer=None, ca=False, ip=None):
    """A key and certificate for `cn`, signed by `issuer` ((cert, key)) or self-signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer[0].subject if issuer else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                            critical=False)
    cert = b.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def write_pair(path_cert, path_key, cert, key):
    path_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path_key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def served_cert_cn(port, ca_path):
    ctx = ssl.create_default_context(cafile=str(ca_path))
    with socket.create_connection(("127.0.0.1", port)) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            der = t.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)[0].value


def test_https_reload_and_client_certificates(tmp_path):
    ca = make_cert("wharf test CA", ca=True)
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    write_pair(cert_path, key_path, *make_cert("first", issuer=ca, ip="127.0.0.1"))
    alice_cert, alice_key = tmp_path / "alice.pem", tmp_path / "alice.key"
    write_pair(alice_cert, alice_key, *make_cert("alice", issuer=ca))
    stranger = make_cert("alice")  # same name, but not signed by the CA
    stranger_cert, stranger_key = tmp_path / "stranger.pem", tmp_path / "stranger.key"
    write_pair(stranger_cert, stranger_key, *stranger)
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(f"""
[tls]
cert = "{cert_path}"
key = "{key_path}"
client_ca = "{ca_path}"
reload_check_secs = 1

[auth]
token_service = false
[[auth.policies]]
repositories = ["team/**"]
users = ["alice"]
actions = ["pull", "push"]
""")
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        assert s.url.startswith("https://")
        port = int(s.host.split(":")[1])
        # the certificate verifies against the CA, and plain HTTP is not spoken
        r = requests.get(f"{s.url}/v2/", verify=str(ca_path))
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
        try:
            plain = requests.get(f"http://{s.host}/v2/", timeout=5).status_code
        except requests.ConnectionError:
            plain = None
        assert plain != 200
        # a client certificate from the CA is the identity "alice"
        r = requests.get(f"{s.url}/v2/team/app/tags/list", verify=str(ca_path),
                         cert=(str(alice_cert), str(alice_key)))
        assert r.status_code == 404, r.text  # allowed; the repository just does not exist
        r = requests.put(f"{s.url}/v2/other/app/manifests/x", data=b"{}", verify=str(ca_path),
                         cert=(str(alice_cert), str(alice_key)))
        assert r.status_code == 403
        # a certificate the CA did not sign does not get through the handshake
        try:
            r = requests.get(f"{s.url}/v2/", verify=str(ca_path),
                             cert=(str(stranger_cert), str(stranger_key)))
            stranger_status = r.status_code
        except (requests.exceptions.SSLError, requests.ConnectionError):
            stranger_status = None
        assert stranger_status is None
        # renew the server certificate in place: served without a restart
        assert served_cert_cn(port, ca_path) == "first"
        write_pair(cert_path, key_path, *make_cert("second", issuer=ca, ip="127.0.0.1"))
        deadline = time.time() + 15
        while served_cert_cn(port, ca_path) != "second":
            assert time.time() < deadline, "the new certificate was not picked up"
            time.sleep(0.3)
        s.wait_log("reloaded the TLS certificate")
        # a broken renewal keeps the working certificate
        key_path.write_text("not a key")
        deadline = time.time() + 15
        while "keeping the current TLS certificate" not in s.log():
            assert time.time() < deadline, "the broken renewal was not noticed"
            time.sleep(0.1)
        assert served_cert_cn(port, ca_path) == "second"
        assert "keeping the current TLS certificate" in s.log()
        # the wharf client over TLS
        (tmp_path / "f.txt").write_text("over mTLS-capable TLS")
        env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
        env["DOCKER_CONFIG"] = str(tmp_path / "docker")
        p = subprocess.run([str(WHARF), "repo", "ls", "--https", s.host], capture_output=True,
                           env=env, timeout=60)
        assert p.returncode == 6 and b"certificate" in p.stderr.lower(), p.stderr
    finally:
        s.stop()


def test_tls_configuration_errors_are_one_line(tmp_path):
    assert_config_refused(tmp_path, [
        ('[tls]\ncert = "/nonexistent.pem"\nkey = "/nonexistent.key"\n', "/nonexistent.pem"),
        ('[tls]\ncert = "/nonexistent.pem"\n', "both a certificate and a key"),
        ('[tls]\ncert = "a"\nkey = "b"\nclient_auth = "maybe"\n', "optional or required"),
    ])


def test_slow_and_idle_tls_connections_are_closed(tmp_path):
    """The HTTPS listener is the HTTP one: a handshake never started, and a connection that
    finished its handshake but sends no request, are closed after their timeouts, while the
    registry keeps answering."""
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    write_pair(cert_path, key_path, *make_cert("registry", ip="127.0.0.1"))
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(f"""
[tls]
cert = "{cert_path}"
key = "{key_path}"

[limits]
header_timeout_secs = 2
idle_timeout_secs = 3
""")
    s = start_wharf(tmp_path / "d", config=cfg)
    port = int(s.url.rsplit(":", 1)[1])
    try:
        silent = socket.create_connection(("127.0.0.1", port))
        ctx = ssl.create_default_context(cafile=str(cert_path))
        idle = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                               server_hostname="127.0.0.1")
        started = time.monotonic()
        for sock, limit in [(silent, 2), (idle, 3)]:
            sock.settimeout(15)
            try:
                assert sock.recv(1) == b""  # closed by the server
            except (ConnectionResetError, ssl.SSLError):
                pass
            waited = time.monotonic() - started
            assert limit - 0.5 < waited < limit + 5, (limit, waited)
        assert requests.get(f"{s.url}/v2/", verify=str(cert_path), timeout=10).status_code == 200
    finally:
        silent.close()
        idle.close()
        s.stop()
