"""The Docker token flow, end to end: Distribution 2.8 configured for token auth, and a
small token service written here that signs ES256 JWTs with a key whose certificate
Distribution trusts. `wharf` must follow the Bearer challenge, ask for the right scopes,
present its stored credentials to the token service, and reuse tokens while they last."""

import base64
import datetime
import http.server
import json
import os
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from conftest import WHARF, start_distribution

USERS = {"alice": "wonderland"}
SERVICE = "wharf-test-registry"
ISSUER = "wharf-test-issuer"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """Grants every requested action to a known user and nothing to anyone else."""

    def __init__(self, tmp_path):
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wharf test token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = tmp_path / "token-signer.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests = []
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                q = urllib.parse.urlparse(self.path)
                params = urllib.parse.parse_qs(q.query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                    if USERS.get(u) != p:
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = u
                scopes = params.get("scope", [])
                service.requests.append({"user": user, "scopes": scopes})
                body = json.dumps({"token": service.sign(user, scopes), "expires_in": 300})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def sign(self, user, scopes):
        access = []
        if user:
            for s in scopes:
                kind, _, rest = s.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"alg": "ES256", "typ": "JWT",
                  "x5c": [base64.b64encode(self.cert.public_bytes(
                      serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "iat": now,
                  "nbf": now - 10, "exp": now + 300, "jti": str(uuid.uuid4()),
                  "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def token_registry(tmp_path):
    tokens = TokenService(tmp_path)
    server = start_distribution(tmp_path, extra_config=f"""auth:
  token:
    realm: {tokens.realm}
    service: {SERVICE}
    issuer: {ISSUER}
    rootcertbundle: {tokens.cert_path}
""")
    yield server, tokens
    server.stop()
    tokens.close()


def wharf(tmp_path, *args, input=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker")
    return subprocess.run([str(WHARF), *map(str, args)], capture_output=True, env=env,
                          input=input, timeout=120)


def test_bearer_token_flow(token_registry, tmp_path):
    reg, tokens = token_registry
    challenge = requests.get(reg.url + "/v2/").headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    p = wharf(tmp_path, "repo", "tags", f"{reg.host}/team/app")
    assert p.returncode == 4, p.stderr
    p = wharf(tmp_path, "login", reg.host, "-u", "alice", "--password-stdin", input=b"nope\n")
    assert p.returncode == 4 and b"refused" in p.stderr, p.stderr
    p = wharf(tmp_path, "login", reg.host, "-u", "alice", "--password-stdin",
              input=b"wonderland\n")
    assert p.returncode == 0, p.stderr

    files = []
    for i in range(3):
        f = tmp_path / f"f{i}.bin"
        f.write_bytes(os.urandom(10_000 + i))
        files.append(f)
    tokens.requests.clear()
    p = wharf(tmp_path, "push", f"{reg.host}/team/app:v1", *files)
    assert p.returncode == 0, p.stderr
    # every request of the push carried alice's credentials to the token service, and asked
    # for push on this repository; tokens were reused, not fetched per request
    assert tokens.requests and all(r["user"] == "alice" for r in tokens.requests)
    assert any("repository:team/app:pull,push" in r["scopes"] for r in tokens.requests)
    assert len(tokens.requests) <= 3, tokens.requests
    out = tmp_path / "out"
    p = wharf(tmp_path, "pull", f"{reg.host}/team/app:v1", "-o", out)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["f0.bin", "f1.bin", "f2.bin"]
    # a copy between repositories asks for pull on the source in the same token (mount)
    tokens.requests.clear()
    p = wharf(tmp_path, "cp", f"{reg.host}/team/app:v1", f"{reg.host}/other/app:v1",
              "--format", "json")
    assert p.returncode == 0, p.stderr
    assert {b["transfer"] for b in json.loads(p.stdout)["blobs"]} == {"mounted"}
    assert any({"repository:other/app:pull,push", "repository:team/app:pull"} <= set(r["scopes"])
               for r in tokens.requests), tokens.requests


def self_signed(tmp_path, host="127.0.0.1"):
    """A self-signed certificate and key for `host`; returns their paths."""
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_by_default_and_insecure_for_self_signed(tmp_path):
    cert, key = self_signed(tmp_path)
    reg = start_distribution(tmp_path, extra_config=f"""  tls:
    certificate: {cert}
    key: {key}
""", scheme="https")
    try:
        (tmp_path / "f.txt").write_text("over TLS")
        # 127.0.0.1 defaults to plain HTTP, which a TLS server does not speak
        p = wharf(tmp_path, "push", f"{reg.host}/tls/app:v1", tmp_path / "f.txt")
        assert p.returncode == 1 and p.stderr.decode() == (
            f"wharf: error: {reg.host} speaks HTTPS: drop --plain-http or use --https\n"), p.stderr
        # HTTPS with a self-signed certificate: refused unless --insecure
        p = wharf(tmp_path, "push", "--https", f"{reg.host}/tls/app:v1", tmp_path / "f.txt")
        assert p.returncode == 6 and b"certificate" in p.stderr.lower(), p.stderr
        p = wharf(tmp_path, "push", "--https", "--insecure", f"{reg.host}/tls/app:v1",
                  tmp_path / "f.txt")
        assert p.returncode == 0, p.stderr
        p = wharf(tmp_path, "pull", "--https", "--insecure", f"{reg.host}/tls/app:v1",
                  "-o", tmp_path / "out")
        assert p.returncode == 0 and (tmp_path / "out" / "f.txt").read_text() == "over TLS"
    finally:
        reg.stop()


def test_credential_helper_is_used(tmp_path, token_registry):
    """A docker-credential-<name> helper named by credsStore stores and serves the login."""
    reg, tokens = token_registry
    bindir = tmp_path / "bin"
    bindir.mkdir()
    store = tmp_path / "helper-store.json"
    helper = bindir / "docker-credential-testvault"
    helper.write_text(f"""#!/usr/bin/env python3
import json, sys
path = {str(store)!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
verb, arg = sys.argv[1], sys.stdin.read().strip()
if verb == "store":
    c = json.loads(arg)
    data[c["ServerURL"]] = {{"Username": c["Username"], "Secret": c["Secret"]}}
    json.dump(data, open(path, "w"))
elif verb == "get":
    if arg not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": arg, **data[arg]}}))
elif verb == "erase":
    data.pop(arg, None)
    json.dump(data, open(path, "w"))
""")
    helper.chmod(0o755)
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text('{"credsStore": "testvault"}')
    env_path = f"{bindir}:{os.environ['PATH']}"
    os.environ["PATH"], old = env_path, os.environ["PATH"]
    try:
        p = wharf(tmp_path, "login", reg.host, "-u", "alice", "--password-stdin",
                  input=b"wonderland\n")
        assert p.returncode == 0, p.stderr
        assert json.loads(store.read_text())[reg.host]["Secret"] == "wonderland"
        assert "auths" not in json.loads((docker / "config.json").read_text()) or \
            reg.host not in json.loads((docker / "config.json").read_text())["auths"]
        p = wharf(tmp_path, "repo", "tags", f"{reg.host}/none/here")
        assert p.returncode in (0, 3), p.stderr  # authenticated: an answer, not a refusal
        p = wharf(tmp_path, "logout", reg.host)
        assert p.returncode == 0 and reg.host not in json.loads(store.read_text())
    finally:
        os.environ["PATH"] = old
