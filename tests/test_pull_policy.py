"""The pull policy of `wharf serve --pull-policy`: manifests of the repositories a rule names
are served only when signed (and attested) as the rule asks, refused with DENIED naming the
rule otherwise; signature manifests stay pullable, so cosign verifies against a guarded
registry; the decision follows signatures as they are added and removed. `wharf verify
--policy` applies the same file from the client side."""

import json
import os
import subprocess
import time

import pytest

from conftest import (OCI_MANIFEST, WHARF, assert_config_refused, error_code,
                      fresh_postgres_database, go_tool, run_wharf, s3_env, start_wharf)

POLICY = """
[[rules]]
name = "production"
repositories = ["prod/**"]
keys = ["prod.pub"]
annotations = { env = "prod" }

[[rules]]
name = "audited"
repositories = ["audited/*"]
keys = ["prod.pub"]
attestations = ["cyclonedx"]
"""


@pytest.fixture
def env(tool_env):
    return dict(tool_env, COSIGN_PASSWORD="pw")


wharf = run_wharf


@pytest.fixture
def guarded(tmp_path, env):
    wharf(env, "key", "generate", "--output-key-prefix", "prod", cwd=tmp_path)
    wharf(env, "key", "generate", "--output-key-prefix", "rogue", cwd=tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    s = start_wharf(tmp_path / "data", "--pull-policy", tmp_path / "policy.toml")
    yield s
    s.stop()


def push(env, s, tmp_path, ref):
    (tmp_path / "f.txt").write_text(ref)
    p = wharf(env, "push", f"{s.host}/{ref}", tmp_path / "f.txt")
    return p.stdout.split("Digest: ")[1].strip()


def get(s, repo, ref):
    return s("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})


def test_unsigned_is_refused_and_signed_is_served(guarded, env, tmp_path):
    s = guarded
    digest = push(env, s, tmp_path, "prod/app:v1")
    push(env, s, tmp_path, "dev/app:v1")
    assert get(s, "dev/app", "v1").status_code == 200  # no rule there
    r = get(s, "prod/app", "v1")
    assert r.status_code == 403 and error_code(r) == "DENIED"
    msg = r.json()["errors"][0]["message"]
    assert msg == (f'pull policy: rule "production": {digest} has no valid signature by '
                   "prod.pub with env=prod"), msg
    assert get(s, "prod/app", digest).status_code == 403  # by digest too
    p = wharf(env, "pull", f"{s.host}/prod/app:v1", "-o", tmp_path / "out", check=False)
    assert p.returncode == 4 and 'pull policy: rule "production"' in p.stderr, p.stderr
    # a signature by another key, or without the annotation, does not do
    wharf(env, "sign", "--key", "rogue.key", "-a", "env=prod", f"{s.host}/prod/app:v1",
          cwd=tmp_path)
    wharf(env, "sign", "--key", "prod.key", f"{s.host}/prod/app:v1", cwd=tmp_path)
    assert get(s, "prod/app", "v1").status_code == 403
    # the signature manifest itself stays pullable
    sig_tag = f"sha256-{digest.split(':')[1]}.sig"
    assert get(s, "prod/app", sig_tag).status_code == 200
    # the right signature lets it through at once (the cached refusal is not reused)
    wharf(env, "sign", "--key", "prod.key", "-a", "env=prod", f"{s.host}/prod/app:v1",
          cwd=tmp_path)
    r = get(s, "prod/app", "v1")
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
    wharf(env, "pull", f"{s.host}/prod/app:v1", "-o", tmp_path / "out")
    # cosign verifies against the guarded registry
    r = subprocess.run([go_tool("cosign"), "verify", "--key", "prod.pub", "--insecure-ignore-tlog",
                        "--allow-insecure-registry", "--allow-http-registry", "-a", "env=prod",
                        f"{s.host}/prod/app@{digest}"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # the signatures removed: refused again
    wharf(env, "untag", f"{s.host}/prod/app:{sig_tag}")
    assert get(s, "prod/app", "v1").status_code == 403
    s.wait_log("pull_denied")


def test_attestation_rules_and_client_side_policy(guarded, env, tmp_path):
    s = guarded
    push(env, s, tmp_path, "audited/app:v1")
    ref = f"{s.host}/audited/app:v1"
    wharf(env, "sign", "--key", "prod.key", ref, cwd=tmp_path)
    r = get(s, "audited/app", "v1")
    assert r.status_code == 403
    assert "has no valid https://cyclonedx.org/bom attestation" in r.json()["errors"][0]["message"]
    p = wharf(env, "verify", "--policy", tmp_path / "policy.toml", ref, check=False)
    assert p.returncode == 5 and "no valid https://cyclonedx.org/bom attestation" in p.stderr
    (tmp_path / "bom.json").write_text(json.dumps({"bomFormat": "CycloneDX", "version": 1}))
    wharf(env, "attest", "--key", "prod.key", "--type", "cyclonedx", "--predicate",
          "bom.json", "--referrers", ref, cwd=tmp_path)
    assert get(s, "audited/app", "v1").status_code == 200
    p = wharf(env, "verify", "--policy", tmp_path / "policy.toml", ref)
    assert p.stdout.strip().endswith('rule "audited" holds'), p.stdout


def test_a_bad_policy_file_stops_the_server(tmp_path, env):
    wharf(env, "key", "generate", "--output-key-prefix", "k", cwd=tmp_path)
    bad = {
        "no-keys.toml": ('[[rules]]\nrepositories = ["a/**"]\n', "names no keys"),
        "missing-key.toml": ('[[rules]]\nrepositories = ["a/**"]\nkeys = ["nope.pub"]\n',
                             "key nope.pub"),
        "private.toml": ('[[rules]]\nrepositories = ["a/**"]\nkeys = ["k.key"]\n',
                         "not an ECDSA P-256 public key"),
        "typo.toml": ('[[rules]]\nrepositories = ["a/**"]\nkeys = ["k.pub"]\nkey = 1\n',
                      "unknown field"),
    }
    for name, (text, says) in bad.items():
        (tmp_path / name).write_text(text)
        r = subprocess.run([str(WHARF), "serve", "--data-dir", str(tmp_path / "d"), "--listen",
                            "127.0.0.1:0", "--pull-policy", str(tmp_path / name)],
                           capture_output=True, text=True, timeout=30,
                           env={k: v for k, v in os.environ.items() if not k.startswith("WHARF_")})
        assert r.returncode != 0 and says in r.stderr, (name, r.stderr)
        assert r.stderr.strip().count("\n") == 0, r.stderr
    assert_config_refused(tmp_path, [(f'pull_policy = "{tmp_path}/no-keys.toml"\n',
                                      "names no keys")])


def test_a_signature_written_through_another_replica_is_seen(tmp_path, env):
    """Replicas cache decisions per digest; one replica's cached refusal gives way once a
    signature arrives through another (at the next recheck of the evidence), and its cached
    approval ends once the signature is removed there."""
    shared = {**s3_env(), "WHARF_METADATA_URL": fresh_postgres_database()}
    wharf(env, "key", "generate", "--output-key-prefix", "prod", cwd=tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    a, b = (start_wharf(tmp_path / f"r{i}", "--pull-policy", tmp_path / "policy.toml",
                        env=shared) for i in range(2))
    try:
        digest = push(env, b, tmp_path, "prod/app:v1")
        for _ in range(3):  # cached on a
            assert get(a, "prod/app", "v1").status_code == 403
        wharf(env, "sign", "--key", "prod.key", "-a", "env=prod", f"{b.host}/prod/app:v1",
              cwd=tmp_path)
        assert get(b, "prod/app", "v1").status_code == 200  # b's own write: at once

        def settles_on(server, status):
            deadline = time.time() + 15  # the recheck interval is 5 s
            while (r := get(server, "prod/app", "v1")).status_code != status:
                assert time.time() < deadline, (r.status_code, r.text)
                time.sleep(0.25)
            return r

        r = settles_on(a, 200)
        assert r.headers["Docker-Content-Digest"] == digest
        wharf(env, "untag", f"{b.host}/prod/app:sha256-{digest.split(':')[1]}.sig")
        assert get(b, "prod/app", "v1").status_code == 403
        settles_on(a, 403)
    finally:
        a.stop()
        b.stop()
