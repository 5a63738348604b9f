"""Cosign-compatible keys, signatures and verification, proven with the real cosign in both
directions against Wharf and Distribution 2.8 and 3: wharf signs and cosign verifies, cosign
signs and wharf verifies, each decrypts the other's key files; and tampering fails with one
line and a non-zero exit."""

import json
import subprocess

import pytest

from conftest import WHARF, go_tool

PW = "correct horse"


@pytest.fixture
def registry(peer_registry):
    return peer_registry


@pytest.fixture
def env(tool_env):
    return dict(tool_env, COSIGN_PASSWORD=PW)


def run(env, *cmd, cwd=None, check=True, input=None):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300, input=input)
    if check:
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


def wharf(env, *args, cwd=None, check=True, input=None):
    return run(env, WHARF, *args, cwd=cwd, check=check, input=input)


COSIGN_REG = ["--allow-insecure-registry", "--allow-http-registry"]


def cosign(env, *args, cwd=None, check=True):
    return run(env, go_tool("cosign"), *args, cwd=cwd, check=check)


def push(env, registry, tmp_path, repo="s/app", tag="v1", text="content"):
    f = tmp_path / f"{repo.replace('/', '-')}-{tag}.txt"
    f.write_text(text)
    p = wharf(env, "push", f"{registry.host}/{repo}:{tag}", f)
    return p.stdout.split("Digest: ")[1].strip()


def test_wharf_signs_and_cosign_verifies(registry, env, tmp_path):
    digest = push(env, registry, tmp_path)
    ref = f"{registry.host}/s/app:v1"
    wharf(env, "key", "generate", cwd=tmp_path)
    assert (tmp_path / "cosign.key").stat().st_mode & 0o777 == 0o600
    p = wharf(env, "sign", "--key", "cosign.key", "-a", "env=prod", ref, cwd=tmp_path)
    sig_tag = f"sha256-{digest.split(':')[1]}.sig"
    assert p.stdout == (f"Signed {registry.host}/s/app@{digest} (signature in "
                        f"{registry.host}/s/app:{sig_tag})\n")
    r = cosign(env, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", *COSIGN_REG,
               "-a", "env=prod", f"{registry.host}/s/app@{digest}", cwd=tmp_path)
    [payload] = json.loads(r.stdout)
    assert payload["critical"]["image"]["docker-manifest-digest"] == digest
    assert payload["critical"]["identity"]["docker-reference"] == f"{registry.host}/s/app"
    assert payload["optional"] == {"env": "prod"}
    # cosign reads wharf's private key too, and appends its own signature
    cosign(env, "sign", "--key", "cosign.key", "--tlog-upload=false", "-y", *COSIGN_REG,
           f"{registry.host}/s/app@{digest}", cwd=tmp_path)
    p = wharf(env, "verify", "--key", "cosign.pub", ref, cwd=tmp_path)
    assert p.stdout.count("valid signature") == 2 and "invalid" not in p.stdout, p.stdout
    r = cosign(env, "download", "signature", *COSIGN_REG, f"{registry.host}/s/app@{digest}")
    assert len(r.stdout.strip().splitlines()) == 2
    r = cosign(env, "tree", *COSIGN_REG, f"{registry.host}/s/app@{digest}")
    assert sig_tag in r.stdout, r.stdout


def test_cosign_signs_and_wharf_verifies(registry, env, tmp_path):
    digest = push(env, registry, tmp_path)
    ref = f"{registry.host}/s/app:v1"
    cosign(env, "generate-key-pair", cwd=tmp_path)
    cosign(env, "sign", "--key", "cosign.key", "--tlog-upload=false", "-y", *COSIGN_REG,
           "-a", "team=infra", f"{registry.host}/s/app@{digest}", cwd=tmp_path)
    p = wharf(env, "verify", "--key", "cosign.pub", "-a", "team=infra", ref, cwd=tmp_path)
    assert p.stdout.startswith(f"{registry.host}/s/app@{digest}: valid signature"), p.stdout
    p = wharf(env, "verify", "--key", "cosign.pub", "--format", "json", ref, cwd=tmp_path)
    assert json.loads(p.stdout)[0]["optional"] == {"team": "infra"}
    # wharf signs with cosign's key, under the current label and the older one
    wharf(env, "sign", "--key", "cosign.key", ref, cwd=tmp_path)
    old = (tmp_path / "cosign.key").read_text().replace(
        "ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
    (tmp_path / "old.key").write_text(old)
    wharf(env, "sign", "--key", "old.key", ref, cwd=tmp_path)
    r = cosign(env, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", *COSIGN_REG,
               f"{registry.host}/s/app@{digest}", cwd=tmp_path)
    # cosign's signature and wharf's: the same key signing the same payload again gives the
    # same (deterministic, RFC 6979) signature, which is not appended twice
    assert sorted(json.dumps(p["optional"]) for p in json.loads(r.stdout)) == [
        "null", '{"team": "infra"}']
    sig = json.loads(wharf(env, "manifest", "fetch",
                           f"{registry.host}/s/app:sha256-{digest.split(':')[1]}.sig").stdout)
    assert len(sig["layers"]) == 2
    # a key from env://, as cosign takes it
    e = dict(env, SIGNING_KEY=(tmp_path / "cosign.key").read_text())
    wharf(e, "sign", "--key", "env://SIGNING_KEY", ref, cwd=tmp_path)


def test_referrer_signatures(env, tmp_path, registry):
    digest = push(env, registry, tmp_path)
    ref = f"{registry.host}/s/app:v1"
    wharf(env, "key", "generate", cwd=tmp_path)
    p = wharf(env, "sign", "--key", "cosign.key", "--referrers", ref, cwd=tmp_path)
    assert f"@{digest} (signature in {registry.host}/s/app@sha256:" in p.stdout
    d = json.loads(wharf(env, "discover", "--format", "json", ref).stdout)
    assert [m["artifactType"] for m in d["referrers"]] == [
        "application/vnd.dev.cosign.artifact.sig.v1+json"]
    p = wharf(env, "verify", "--key", "cosign.pub", ref, cwd=tmp_path)
    assert "valid signature" in p.stdout


def test_tampering_fails_with_one_line(registry, env, tmp_path):
    h = registry.host
    a = push(env, registry, tmp_path, tag="a", text="first")
    b = push(env, registry, tmp_path, tag="b", text="second")
    wharf(env, "key", "generate", cwd=tmp_path)
    wharf(env, "key", "generate", "--output-key-prefix", "other", cwd=tmp_path)
    # nothing signed yet
    p = wharf(env, "verify", "--key", "cosign.pub", f"{h}/s/app:a", cwd=tmp_path, check=False)
    assert p.returncode == 5
    assert p.stderr == f"wharf: error: {h}/s/app@{a} has no signatures\n"
    wharf(env, "sign", "--key", "cosign.key", f"{h}/s/app:a", cwd=tmp_path)
    # wrong key
    p = wharf(env, "verify", "--key", "other.pub", f"{h}/s/app:a", cwd=tmp_path, check=False)
    assert p.returncode == 5 and p.stderr.count("\n") == 1
    assert "the signature does not match the payload and key" in p.stderr, p.stderr
    # a required annotation missing
    p = wharf(env, "verify", "--key", "cosign.pub", "-a", "env=prod", f"{h}/s/app:a",
              cwd=tmp_path, check=False)
    assert p.returncode == 5 and "lacks a required annotation" in p.stderr, p.stderr
    # a's signature moved over to b: it signs another digest
    sig_a = json.loads(wharf(env, "manifest", "fetch",
                             f"{h}/s/app:sha256-{a.split(':')[1]}.sig").stdout)
    (tmp_path / "moved.json").write_text(json.dumps(sig_a))
    wharf(env, "manifest", "push", f"{h}/s/app:sha256-{b.split(':')[1]}.sig",
          tmp_path / "moved.json")
    p = wharf(env, "verify", "--key", "cosign.pub", f"{h}/s/app:b", cwd=tmp_path, check=False)
    assert p.returncode == 5 and f"the payload signs {a}, not {b}" in p.stderr, p.stderr
    # a changed payload under the same signature
    forged = json.dumps({"critical": {"identity": {"docker-reference": f"{h}/s/app"},
                                      "image": {"docker-manifest-digest": b},
                                      "type": "cosign container image signature"},
                         "optional": None}).encode()
    (tmp_path / "forged").write_bytes(forged)
    fd = wharf(env, "blob", "push", f"{h}/s/app", tmp_path / "forged").stdout.strip()
    sig_a["layers"][0]["digest"], sig_a["layers"][0]["size"] = fd, len(forged)
    (tmp_path / "forged.json").write_text(json.dumps(sig_a))
    wharf(env, "manifest", "push", f"{h}/s/app:sha256-{b.split(':')[1]}.sig",
          tmp_path / "forged.json")
    p = wharf(env, "verify", "--key", "cosign.pub", f"{h}/s/app:b", cwd=tmp_path, check=False)
    assert p.returncode == 5 and "does not match the payload and key" in p.stderr, p.stderr
    # key files: wrong password, truncated, not a key
    bad = dict(env, COSIGN_PASSWORD="wrong")
    p = wharf(bad, "sign", "--key", "cosign.key", f"{h}/s/app:a", cwd=tmp_path, check=False)
    assert p.returncode == 1 and p.stderr == (
        "wharf: error: --key cosign.key: wrong password for the private key (or the key file "
        "is damaged)\n"), p.stderr
    key = (tmp_path / "cosign.key").read_text()
    (tmp_path / "cut.key").write_text(key[:len(key) // 2])
    p = wharf(env, "sign", "--key", "cut.key", f"{h}/s/app:a", cwd=tmp_path, check=False)
    assert p.returncode == 1 and p.stderr.startswith("wharf: error: --key cut.key: ")
    assert p.stderr.count("\n") == 1 and "panicked" not in p.stderr
    p = wharf(env, "verify", "--key", "cosign.key", f"{h}/s/app:a", cwd=tmp_path, check=False)
    assert p.returncode == 1 and "not an ECDSA P-256 public key" in p.stderr, p.stderr
    p = wharf(env, "key", "generate", cwd=tmp_path, check=False)
    assert p.returncode == 1 and "cosign.key exists: pass --force" in p.stderr


def test_copies_and_promotion_carry_and_make_signatures(registry, env, tmp_path):
    from conftest import start_wharf
    digest = push(env, registry, tmp_path)
    src = f"{registry.host}/s/app"
    cosign(env, "generate-key-pair", cwd=tmp_path)
    cosign(env, "sign", "--key", "cosign.key", "--tlog-upload=false", "-y", *COSIGN_REG,
           f"{src}@{digest}", cwd=tmp_path)
    wharf(env, "key", "generate", "--output-key-prefix", "prod", cwd=tmp_path)
    wharf(env, "sign", "--key", "prod.key", "--referrers", f"{src}:v1", cwd=tmp_path)
    target = start_wharf(tmp_path / "target")
    try:
        # cp -r carries both: the .sig tag and the signature referrer
        wharf(env, "cp", "-r", f"{src}:v1", f"{target.host}/mirror/app:v1")
        p = wharf(env, "verify", "--key", "cosign.pub", f"{target.host}/mirror/app:v1",
                  cwd=tmp_path)
        assert "valid signature" in p.stdout
        wharf(env, "verify", "--key", "prod.pub", f"{target.host}/mirror/app:v1", cwd=tmp_path)
        cosign(env, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", *COSIGN_REG,
               f"{target.host}/mirror/app@{digest}", cwd=tmp_path)
        # so do backup and restore
        wharf(env, "backup", f"{src}:v1", "-o", tmp_path / "bk")
        wharf(env, "restore", tmp_path / "bk", f"{target.host}/restored/app")
        wharf(env, "verify", "--key", "cosign.pub", f"{target.host}/restored/app:v1",
              cwd=tmp_path)
        # promote: by digest, signed with the target key in the target, then tagged
        p = wharf(env, "promote", "--key", "prod.key", "-a", "stage=prod", f"{src}:v1",
                  f"{target.host}/prod/app:v1", cwd=tmp_path)
        assert p.stdout.splitlines()[0] == (
            f"Promoted {src}@{digest} -> {target.host}/prod/app:v1"), p.stdout
        wharf(env, "verify", "--key", "prod.pub", "-a", "stage=prod",
              f"{target.host}/prod/app:v1", cwd=tmp_path)
        cosign(env, "verify", "--key", "prod.pub", "--insecure-ignore-tlog", *COSIGN_REG,
               "-a", "stage=prod", f"{target.host}/prod/app@{digest}", cwd=tmp_path)
        # the source signature still verifies in the source
        wharf(env, "verify", "--key", "cosign.pub", f"{src}:v1", cwd=tmp_path)
        # a key that cannot be read: nothing is copied, the tag does not appear
        bad = dict(env, COSIGN_PASSWORD="wrong")
        p = wharf(bad, "promote", "--key", "prod.key", f"{src}:v1",
                  f"{target.host}/prod/other:v1", cwd=tmp_path, check=False)
        assert p.returncode == 1 and "wrong password" in p.stderr
        p = wharf(env, "resolve", f"{target.host}/prod/other:v1", check=False)
        assert p.returncode == 3
    finally:
        target.stop()


BOM = {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
       "components": [{"type": "library", "name": "left-pad", "version": "1.3.0"}]}
SPDX = {"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": "app", "documentNamespace": "https://example.com/app",
        "creationInfo": {"created": "2026-12-01T00:00:00Z", "creators": ["Tool: test"]},
        "packages": []}


def test_attestations_both_ways(registry, env, tmp_path):
    digest = push(env, registry, tmp_path)
    ref = f"{registry.host}/s/app:v1"
    at = f"{registry.host}/s/app@{digest}"
    (tmp_path / "bom.json").write_text(json.dumps(BOM))
    (tmp_path / "sbom.json").write_text(json.dumps(SPDX))
    cosign(env, "generate-key-pair", cwd=tmp_path)
    # wharf attests with cosign's key; cosign verifies it
    p = wharf(env, "attest", "--key", "cosign.key", "--type", "cyclonedx", "--predicate",
              "bom.json", ref, cwd=tmp_path)
    assert p.stdout.startswith(f"Attested {at} (https://cyclonedx.org/bom; in "), p.stdout
    r = cosign(env, "verify-attestation", "--key", "cosign.pub", "--type", "cyclonedx",
               "--insecure-ignore-tlog", *COSIGN_REG, at, cwd=tmp_path)
    env_doc = json.loads(r.stdout.strip().splitlines()[0])
    import base64
    statement = json.loads(base64.b64decode(env_doc["payload"]))
    assert statement["predicate"] == BOM and statement["subject"][0]["digest"] == {
        "sha256": digest.split(":")[1]}
    # cosign attests; wharf verifies and prints the predicate
    cosign(env, "attest", "--key", "cosign.key", "--type", "spdxjson", "--predicate",
           "sbom.json", "--tlog-upload=false", "-y", *COSIGN_REG, at, cwd=tmp_path)
    p = wharf(env, "verify-attestation", "--key", "cosign.pub", "--type", "spdxjson", ref,
              cwd=tmp_path)
    assert json.loads(p.stdout) == SPDX, p.stdout
    assert "valid attestation, https://spdx.dev/Document" in p.stderr
    p = wharf(env, "verify-attestation", "--key", "cosign.pub", "--type", "cyclonedx",
              "--format", "json", ref, cwd=tmp_path)
    assert [s["predicate"] for s in json.loads(p.stdout)] == [BOM]
    # an attestation of another type, and a wrong key, fail with one line
    p = wharf(env, "verify-attestation", "--key", "cosign.pub", "--type", "vuln", ref,
              cwd=tmp_path, check=False)
    assert p.returncode == 5
    assert "the predicate is https://spdx.dev/Document, not " \
        "https://cosign.sigstore.dev/attestation/vuln/v1" in p.stderr.splitlines()[-1]
    wharf(env, "key", "generate", "--output-key-prefix", "other", cwd=tmp_path)
    p = wharf(env, "verify-attestation", "--key", "other.pub", ref, cwd=tmp_path, check=False)
    assert p.returncode == 5 and "does not match the payload and key" in p.stderr
    # a referrer attestation
    wharf(env, "attest", "--key", "other.key", "--type", "https://example.com/review/v1",
          "--predicate", "bom.json", "--referrers", ref, cwd=tmp_path)
    p = wharf(env, "verify-attestation", "--key", "other.pub", "--type",
              "https://example.com/review/v1", ref, cwd=tmp_path)
    assert json.loads(p.stdout) == BOM
    p = wharf(env, "attest", "--key", "other.key", "--type", "nonsense", "--predicate",
              "bom.json", ref, cwd=tmp_path, check=False)
    assert p.returncode == 1 and "unknown attestation type" in p.stderr


def test_public_key_from_an_https_url(tmp_path, env):
    """`--key https://...` fetches the public key, trusting --ca-file for the key server."""
    import http.server
    import ssl
    import threading

    from conftest import start_wharf
    from test_tls import make_cert, write_pair
    from cryptography.hazmat.primitives import serialization

    ca = make_cert("key server CA", ca=True)
    (tmp_path / "ca.pem").write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    write_pair(tmp_path / "srv.pem", tmp_path / "srv.key",
               *make_cert("keys", issuer=ca, ip="127.0.0.1"))
    wharf(env, "key", "generate", cwd=tmp_path)
    keys = tmp_path / "published"
    keys.mkdir()
    (keys / "release.pub").write_text((tmp_path / "cosign.pub").read_text())
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(keys), **k)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    s = start_wharf(tmp_path / "data")
    try:
        (tmp_path / "f.txt").write_text("x")
        wharf(env, "push", f"{s.host}/k/app:v1", tmp_path / "f.txt")
        wharf(env, "sign", "--key", "cosign.key", f"{s.host}/k/app:v1", cwd=tmp_path)
        url = f"https://127.0.0.1:{httpd.server_address[1]}/release.pub"
        p = wharf(env, "verify", "--key", url, "--ca-file", tmp_path / "ca.pem",
                  f"{s.host}/k/app:v1", cwd=tmp_path)
        assert "valid signature" in p.stdout
        # without the key server's CA: refused, saying so
        p = wharf(env, "verify", "--key", url, f"{s.host}/k/app:v1", cwd=tmp_path, check=False)
        assert p.returncode == 6 and "unknown authority" in p.stderr, p.stderr
        p = wharf(env, "verify", "--key", url + ".missing", "--ca-file", tmp_path / "ca.pem",
                  f"{s.host}/k/app:v1", cwd=tmp_path, check=False)
        assert p.returncode == 3 and p.stderr.count("\n") == 1, p.stderr
    finally:
        s.stop()
        httpd.shutdown()
