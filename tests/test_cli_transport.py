"""How `wharf` reaches registries: a private CA with --ca-file, TLS refusals in words, and
per-side transport and credentials for copies and restores (--from-* / --to-*), between a
Wharf that serves HTTPS from a test CA and a Distribution 3 on plain HTTP, each with its
own user."""

import json
import os
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import WHARF, start_distribution, start_wharf
from test_auth import bcrypt_hash
from test_tls import make_cert, write_pair

PEM = serialization.Encoding.PEM
HINT = "pass --ca-file FILE with the CA that signed it, or --insecure for a test registry"


def wharf(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker")
    return subprocess.run([str(WHARF), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def tls_wharf(tmp_path, name, ca, ip="127.0.0.1"):
    """A Wharf on HTTPS with a certificate from `ca` for `ip`, and one user, alice."""
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    write_pair(cert, key, *make_cert(name, issuer=ca, ip=ip))
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(f"""
[tls]
cert = "{cert}"
key = "{key}"
[auth]
token_service = false
[[auth.users]]
name = "alice"
password_hash = "{bcrypt_hash('alice-pw')}"
[[auth.policies]]
repositories = ["**"]
users = ["alice"]
actions = ["pull", "push", "delete"]
""")
    return start_wharf(tmp_path / name, config=cfg)


@pytest.fixture
def sides(tmp_path):
    ca = make_cert("wharf test CA", ca=True)
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca[0].public_bytes(PEM))
    src = tls_wharf(tmp_path, "source", ca)
    dst = start_distribution(tmp_path, users={"bob": "bob-pw"}, version=3)
    (tmp_path / "f.txt").write_text("carried across\n")
    yield src, dst, ca, ca_path
    src.stop()
    dst.stop()


def test_ca_file_and_certificate_refusals_in_words(tmp_path, sides):
    src, _, ca, ca_path = sides
    ref = f"{src.host}/team/app:v1"
    creds = ["-u", "alice", "-p", "alice-pw"]
    p = wharf(tmp_path, "push", "--https", *creds, ref, tmp_path / "f.txt")
    assert p.returncode == 6
    assert p.stderr == (f"wharf: error: cannot reach {src.host}: TLS certificate signed by an "
                        f"unknown authority: {HINT}\n"), p.stderr
    p = wharf(tmp_path, "push", "--https", "--ca-file", ca_path, *creds, ref, tmp_path / "f.txt")
    assert p.returncode == 0, p.stderr
    # a CA file that holds no certificate is named, before any request
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    p = wharf(tmp_path, "resolve", "--https", "--ca-file", tmp_path / "junk.pem", *creds, ref)
    assert p.returncode == 1 and "junk.pem: no PEM certificate in it" in p.stderr, p.stderr
    p = wharf(tmp_path, "resolve", "--https", "--ca-file", tmp_path / "missing.pem", *creds, ref)
    assert p.returncode == 1 and "missing.pem: No such file" in p.stderr, p.stderr
    # a certificate from the right CA, for another address
    other = tls_wharf(tmp_path, "elsewhere", ca, ip="10.9.8.7")
    try:
        p = wharf(tmp_path, "resolve", "--https", "--ca-file", ca_path, *creds,
                  f"{other.host}/team/app:v1")
        assert p.returncode == 6
        assert p.stderr == (f"wharf: error: cannot reach {other.host}: TLS certificate is not "
                            f"valid for 127.0.0.1: {HINT}\n"), p.stderr
    finally:
        other.stop()


def test_copy_and_restore_with_per_side_transport_and_credentials(tmp_path, sides):
    src, dst, _, ca_path = sides
    ref = f"{src.host}/team/app:v1"
    p = wharf(tmp_path, "push", "--https", "--ca-file", ca_path, "-u", "alice", "-p", "alice-pw",
              ref, tmp_path / "f.txt")
    assert p.returncode == 0, p.stderr
    digest = p.stdout.split("Digest: ")[1].strip()
    from_flags = ["--from-ca-file", ca_path, "--from-username", "alice",
                  "--from-password", "alice-pw"]
    to_flags = ["--to-plain-http", "--to-username", "bob", "--to-password", "bob-pw"]
    # --https reaches the source; the destination is plain HTTP with its own user
    p = wharf(tmp_path, "cp", "--https", *from_flags, *to_flags, ref, f"{dst.host}/mirror/app:v1",
              "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["digest"] == digest
    p = wharf(tmp_path, "resolve", "-u", "bob", "-p", "bob-pw", f"{dst.host}/mirror/app:v1")
    assert p.stdout.strip() == digest, p.stderr
    # each side's settings are its own: without the source's CA, the source is refused
    p = wharf(tmp_path, "cp", "--https", "--from-username", "alice", "--from-password",
              "alice-pw", *to_flags, ref, f"{dst.host}/mirror/app:v2")
    assert p.returncode == 6 and "unknown authority" in p.stderr, p.stderr
    # and a wrong password on one side names that side's user
    p = wharf(tmp_path, "cp", "--https", *from_flags, "--to-plain-http", "--to-username", "bob",
              "--to-password", "wrong", ref, f"{dst.host}/mirror/app:v3")
    assert p.returncode == 4
    assert p.stderr == f"wharf: error: {dst.host} refused the credentials for bob\n", p.stderr
    # half a credential is a usage error with the flag's name
    p = wharf(tmp_path, "cp", "--https", *from_flags, "--to-username", "bob", ref,
              f"{dst.host}/mirror/app:v4")
    assert p.returncode == 1 and "--to-username needs --to-password" in p.stderr, p.stderr
    # one registry on both sides: per-side flags make no sense there
    p = wharf(tmp_path, "cp", "--https", *from_flags, ref, f"{src.host}/team/copy:v1")
    assert p.returncode == 1 and "both sides are" in p.stderr, p.stderr
    # backup takes the source's settings, restore the destination's, the same way
    out = tmp_path / "backup"
    p = wharf(tmp_path, "backup", "--https", *from_flags, ref, "-o", out)
    assert p.returncode == 0, p.stderr
    p = wharf(tmp_path, "restore", *to_flags, out, f"{dst.host}/restored/app")
    assert p.returncode == 0, p.stderr
    p = wharf(tmp_path, "resolve", "-u", "bob", "-p", "bob-pw", f"{dst.host}/restored/app:v1")
    assert p.stdout.strip() == digest, p.stderr
