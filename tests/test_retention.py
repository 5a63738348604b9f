"""Retention: `[[retention]]` rules, run by garbage collection, keep the last N tags of a
repository (by push time or by SemVer) and the tags matching keep patterns, delete the rest
(never an immutable tag), keep untagged manifests for a set time, and always keep the
referrers of what they keep. A dry run lists exactly what the real pass then deletes. On the
embedded default and on PostgreSQL."""

import json
import time

import pytest
import requests

from conftest import (OCI_MANIFEST, assert_config_refused, fresh_postgres_database, run_wharf,
                      sha256, start_wharf)

RULES = """
[[retention]]
repositories = ["dev/**"]
keep_last = 2
keep_tags = ["latest"]

[[retention]]
repositories = ["charts/**"]
keep_last = 1
order = "semver"

[[retention]]
repositories = ["slow/**"]
untagged_after_secs = 3600

[[immutable_tags]]
repositories = ["dev/**"]
tags = ["v*"]
"""


def signature_of(s, repo, subject_digest, subject_manifest):
    """Pushes a referrer of the subject (as a signature is) by digest; returns its digest."""
    sig = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
           "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                      "digest": s.push_blob(repo, b"{}"), "size": 2},
           "layers": [],
           "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest,
                       "size": len(json.dumps(subject_manifest).encode())}}
    raw = json.dumps(sig).encode()
    return s.push_manifest(repo, sha256(raw), raw)


def tags(s, repo):
    return sorted(requests.get(f"{s.url}/v2/{repo}/tags/list").json().get("tags") or [])


def exists(s, repo, digest):
    return s("HEAD", f"/v2/{repo}/manifests/{digest}").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_retention_keeps_what_its_rules_say(backend, tmp_path, tool_env):
    (tmp_path / "wharf.toml").write_text(RULES)
    args = ["--metadata-url", fresh_postgres_database()] if backend == "postgres" else []
    s = start_wharf(tmp_path / "data", *args, config=tmp_path / "wharf.toml")
    try:
        # dev/app, oldest first: v0 (immutable), t1 (also "latest"), t2 (signed), t3, t4
        # (signed). Tags are ranked by the second they were pushed in.
        pushed = {}
        for t in ("v0", "t1", "t2", "t3", "t4"):
            pushed[t] = s.push_image("dev/app", t, layers=[f"layer {t}".encode()])
            time.sleep(1.1)
        s.push_manifest("dev/app", "latest", pushed["t1"][1])
        sig2 = signature_of(s, "dev/app", *pushed["t2"])
        sig4 = signature_of(s, "dev/app", *pushed["t4"])
        # charts/app by SemVer: 1.10.0 is the highest; "nightly" is not a version
        charts = {v: s.push_image("charts/app", v, layers=[f"chart {v}".encode()])[0]
                  for v in ("1.10.0", "1.2.0", "1.0.0", "nightly")}
        # untagged manifests: kept an hour in slow/**, collected at once elsewhere
        slow, _ = s.push_image("slow/app", "tmp", layers=[b"slow"])
        fast, _ = s.push_image("fast/app", "tmp", layers=[b"fast"])
        for repo in ("slow/app", "fast/app"):
            assert s("DELETE", f"/v2/{repo}/manifests/tmp").status_code == 202

        expect_tags = {"dev/app:t1", "dev/app:t2", "charts/app:1.0.0", "charts/app:1.2.0"}
        expect_manifests = {f"dev/app@{pushed['t2'][0]}", f"dev/app@{sig2}",
                            f"charts/app@{charts['1.0.0']}", f"charts/app@{charts['1.2.0']}",
                            f"fast/app@{fast}"}
        # the dry run: the CLI through the registry, as an operator runs it first
        out = run_wharf(tool_env, "gc", "--registry", s.host, "--dry-run",
                        "--grace", "0s", "--plain-http")
        for t in sorted(expect_tags):
            assert f"would delete tag {t}\n" in out.stdout, out.stdout
        assert "would delete 4 tags, 5 manifests" in out.stdout, out.stdout
        dry = s("POST", "/v2/_wharf/gc", params={"grace": "0s", "dry_run": "true"}).json()
        assert set(dry["tags"]) == expect_tags, dry
        assert set(dry["manifests"]) == expect_manifests, dry
        assert tags(s, "dev/app") == ["latest", "t1", "t2", "t3", "t4", "v0"]

        real = s("POST", "/v2/_wharf/gc", params={"grace": "0s"}).json()
        assert set(real["tags"]) == expect_tags, real
        assert set(real["manifests"]) == expect_manifests, real
        assert set(real["links"]) == set(dry["links"]) and real["links"], (real, dry)
        if backend == "sqlite":  # with replicas, bytes are kept a minute whatever the grace
            assert set(real["blobs"]) == set(dry["blobs"]) and real["blobs"], (real, dry)
        assert tags(s, "dev/app") == ["latest", "t3", "t4", "v0"]
        assert tags(s, "charts/app") == ["1.10.0", "nightly"]
        # what stays: t1's manifest (still "latest"), the kept tags' manifests and the
        # signature of a kept one; the untagged manifest its rule keeps for an hour
        for t in ("v0", "t1", "t3", "t4"):
            assert exists(s, "dev/app", pushed[t][0]), t
        assert exists(s, "dev/app", sig4)
        assert not exists(s, "dev/app", sig2)
        assert exists(s, "slow/app", slow) and not exists(s, "fast/app", fast)
        layer = s("GET", f"/v2/dev/app/blobs/{sha256(b'layer t4')}")
        assert layer.status_code == 200 and layer.content == b"layer t4"
        # the next pass finds nothing more to do
        again = s("POST", "/v2/_wharf/gc", params={"grace": "0s"}).json()
        assert (again["tags"], again["manifests"]) == ([], []), again
        text = requests.get(f"{s.url}/metrics").text
        assert 'wharf_gc_deleted_total{kind="tag"} 4' in text
    finally:
        s.stop()


def test_bad_retention_rules_are_refused(tmp_path):
    assert_config_refused(tmp_path, [
        ('[[retention]]\nrepositories = []\nkeep_last = 1\n',
         "[[retention]]: each rule needs repositories"),
        ('[[retention]]\nrepositories = ["a/**"]\n',
         "sets neither keep_last nor untagged_after_secs"),
        ('[[retention]]\nrepositories = ["a/**"]\nkeep_last = 1\norder = "newest"\n',
         '[[retention]]: order "newest": expected "pushed" or "semver"'),
        ('[[retention]]\nrepositories = ["a/**"]\nuntagged_after_secs = 60\norder = "semver"\n',
         "order ranks tags for keep_last, which is not set"),
        ('[[retention]]\nrepositories = ["a/**"]\nkeep_last = -1\n',
         "line 3: invalid value: integer `-1`"),
        ('[[retention]]\nrepositories = ["a/**"]\nkeep = 1\n', "unknown field `keep`"),
    ])
