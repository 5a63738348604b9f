"""Tag immutability: `[[immutable_tags]]` rules name repositories and tag patterns; such a
tag keeps the manifest it was first pushed with. Moving it, deleting it, or deleting the
manifest it names is refused with DENIED and a message naming the rule, whatever the
caller's rights, and the tag stays as it was; the same push again is not a move. On the
embedded default and on PostgreSQL."""

import json

import pytest
import requests

from conftest import (OCI_MANIFEST, assert_config_refused, error_code, fresh_postgres_database,
                      run_wharf, start_wharf)
from test_auth import users_config

RULES = """
[[immutable_tags]]
repositories = ["prod/**"]
tags = ["v*", "release-*"]
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_immutable_tags_keep_their_manifest(backend, tmp_path, tool_env):
    # alice may do everything, overwriting and deleting included: the rule still holds
    cfg = users_config(tmp_path / "wharf.toml", {"alice": "alice-pw"},
                       [(["**"], ["alice"], ["pull", "push", "overwrite", "delete"])])
    cfg.write_text(cfg.read_text() + RULES)
    args = ["--metadata-url", fresh_postgres_database()] if backend == "postgres" else []
    s = start_wharf(tmp_path / "data", *args, config=cfg)
    auth = ("alice", "alice-pw")
    try:
        s.http.auth = auth
        first, _ = s.push_image("prod/app", "v1", layers=[b"first"])
        other, m2 = s.push_image("prod/app", "candidate", layers=[b"second"])
        raw = json.dumps(m2).encode()
        r = s("PUT", "/v2/prod/app/manifests/v1", data=raw,
              headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 403 and error_code(r) == "DENIED", r.text
        msg = r.json()["errors"][0]["message"]
        assert msg == ("prod/app:v1 is immutable ([[immutable_tags]]): it keeps the manifest "
                       "it points to"), msg
        assert s("HEAD", "/v2/prod/app/manifests/v1").headers["Docker-Content-Digest"] == first
        # the same manifest again is no move
        m1 = s("GET", "/v2/prod/app/manifests/v1", headers={"Accept": OCI_MANIFEST}).content
        r = s("PUT", "/v2/prod/app/manifests/v1", data=m1,
              headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
        # deleting the tag, or the manifest it names, is refused; the tag stays
        for ref in ("v1", first):
            r = s("DELETE", f"/v2/prod/app/manifests/{ref}")
            assert r.status_code == 403 and error_code(r) == "DENIED", (ref, r.text)
            assert "prod/app:v1 is immutable" in r.json()["errors"][0]["message"]
        assert s("HEAD", "/v2/prod/app/manifests/v1").headers["Docker-Content-Digest"] == first
        # a new immutable tag may be written once
        assert s("PUT", "/v2/prod/app/manifests/release-2", data=raw,
                 headers={"Content-Type": OCI_MANIFEST}).status_code == 201
        assert s("PUT", "/v2/prod/app/manifests/release-2", data=m1,
                 headers={"Content-Type": OCI_MANIFEST}).status_code == 403
        # tags and repositories no rule names move and go as before
        assert s("PUT", "/v2/prod/app/manifests/latest", data=m1,
                 headers={"Content-Type": OCI_MANIFEST}).status_code == 201
        assert s("PUT", "/v2/prod/app/manifests/latest", data=raw,
                 headers={"Content-Type": OCI_MANIFEST}).status_code == 201
        assert s("DELETE", "/v2/prod/app/manifests/latest").status_code == 202
        s.push_image("dev/app", "v1", layers=[b"first"])
        s.push_image("dev/app", "candidate", layers=[b"second"])
        assert s("PUT", "/v2/dev/app/manifests/v1", data=raw,
                 headers={"Content-Type": OCI_MANIFEST}).status_code == 201
        assert s("DELETE", "/v2/dev/app/manifests/v1").status_code == 202
        # a missing immutable tag is simply unknown
        r = s("DELETE", "/v2/prod/app/manifests/v9")
        assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
        # the client says why in one line
        env = dict(tool_env, WHARF_USERNAME="alice", WHARF_PASSWORD="alice-pw")
        r = run_wharf(env, "untag", f"{s.host}/prod/app:v1", "--plain-http", check=False)
        assert r.returncode == 4 and "prod/app:v1 is immutable" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
        r = run_wharf(env, "tag", f"{s.host}/prod/app:candidate", "v1", "--plain-http",
                      check=False)
        assert r.returncode == 4 and "prod/app:v1 is immutable" in r.stderr, r.stderr
        assert s("HEAD", "/v2/prod/app/manifests/v1").headers["Docker-Content-Digest"] == first
        assert other != first
    finally:
        s.stop()


def test_immutable_tags_survive_collection(tmp_path):
    (tmp_path / "wharf.toml").write_text(RULES)
    s = start_wharf(tmp_path / "data", config=tmp_path / "wharf.toml")
    try:
        digest, _ = s.push_image("prod/app", "v1", layers=[b"kept"])
        r = s("POST", "/v2/_wharf/gc", params={"grace": "0s"})
        assert r.status_code == 200 and r.json()["manifests"] == []
        assert s("HEAD", f"/v2/prod/app/manifests/{digest}").status_code == 200
        assert requests.get(f"{s.url}/v2/prod/app/tags/list").json()["tags"] == ["v1"]
    finally:
        s.stop()


def test_bad_rules_are_refused(tmp_path):
    assert_config_refused(tmp_path, [
        ('[[immutable_tags]]\nrepositories = ["prod/**"]\ntags = []\n',
         "[[immutable_tags]]: each rule needs repositories and tags"),
        ('[[immutable_tags]]\nrepositories = ["prod/***"]\ntags = ["v*"]\n',
         "[[immutable_tags]]: \"prod/***\""),
        ('[[immutable_tags]]\nrepositories = ["prod/**"]\n',
         "missing field `tags`"),
    ])
