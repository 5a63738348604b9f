"""Tags list, catalog and referrers, with pagination and filtering."""

import json
import re

import pytest

from conftest import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, error_code, sha256


def next_link(r):
    link = r.headers.get("Link")
    if not link:
        return None
    m = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert m, link
    return m.group(1)


def tag_all(wharf, repo, digest, tags):
    raw = wharf("GET", f"/v2/{repo}/manifests/{digest}").content
    for t in tags:
        wharf.push_manifest(repo, t, raw)


def test_tags_pagination_follows_link(wharf):
    d, _ = wharf.push_image("paged", "seed")
    tags = sorted(["seed"] + [f"t{i:03d}" for i in range(25)])
    tag_all(wharf, "paged", d, tags[1:])
    r = wharf("GET", "/v2/paged/tags/list")
    assert r.json() == {"name": "paged", "tags": tags} and "Link" not in r.headers
    seen, url = [], "/v2/paged/tags/list?n=7"
    while url:
        r = wharf("GET", url)
        assert r.status_code == 200
        page = r.json()["tags"]
        assert len(page) <= 7
        seen += page
        url = next_link(r)
    assert seen == tags
    r = wharf("GET", "/v2/paged/tags/list", params={"n": 5, "last": "t010"})
    assert r.json()["tags"] == ["t011", "t012", "t013", "t014", "t015"]
    r = wharf("GET", "/v2/paged/tags/list", params={"n": 0})
    assert r.json()["tags"] == [] and "Link" not in r.headers


def test_tags_of_unknown_repository(wharf):
    r = wharf("GET", "/v2/never/pushed/tags/list")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"


@pytest.mark.parametrize("n", ["-1", "abc", "10001", "99999999999999999999999"])
def test_page_size_limit(wharf, n):
    wharf.push_image("limit", "x")
    for path in ("/v2/limit/tags/list", "/v2/_catalog",
                 f"/v2/limit/referrers/{sha256(b'x')}"):
        r = wharf("GET", path, params={"n": n})
        assert r.status_code == 400, (path, r.text)
        assert error_code(r) == "PAGINATION_NUMBER_INVALID"
    assert wharf("GET", "/v2/limit/tags/list", params={"n": 10000}).status_code == 200


def test_catalog_pagination(wharf):
    names = sorted(f"cat/r{i:02d}" for i in range(12))
    for name in names:
        wharf.push_image(name, "v1")
    # not listed: holds no manifest
    assert wharf("POST", "/v2/only-an-upload/blobs/uploads/").status_code == 202
    assert wharf("GET", "/v2/_catalog").json() == {"repositories": names}
    seen, url = [], "/v2/_catalog?n=5"
    while url:
        r = wharf("GET", url)
        seen += r.json()["repositories"]
        url = next_link(r)
    assert seen == names


def push_referrer(wharf, repo, subject_digest, subject_size, artifact_type, payload, tag=None,
                  annotations=None):
    cfg = wharf.push_blob(repo, b"{}")
    blob = wharf.push_blob(repo, payload)
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
         "config": {"mediaType": OCI_EMPTY, "digest": cfg, "size": 2},
         "layers": [{"mediaType": "application/octet-stream", "digest": blob,
                     "size": len(payload)}],
         "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_size}}
    if annotations:
        m["annotations"] = annotations
    raw = json.dumps(m).encode()
    r = wharf("PUT", f"/v2/{repo}/manifests/{tag or sha256(raw)}", data=raw,
              headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == subject_digest
    return r.headers["Docker-Content-Digest"], len(raw)


def test_referrers_listing_and_filter(wharf):
    sd, sm = wharf.push_image("ref", "v1")
    ssize = len(json.dumps(sm).encode())
    sig, sig_size = push_referrer(wharf, "ref", sd, ssize, "application/vnd.dev.cosign.sig",
                                  b"sig", annotations={"k": "v"})
    sbom, _ = push_referrer(wharf, "ref", sd, ssize, "application/spdx+json", b"sbom")
    r = wharf("GET", f"/v2/ref/referrers/{sd}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    body = r.json()
    assert body["schemaVersion"] == 2 and body["mediaType"] == OCI_INDEX
    got = {m["digest"]: m for m in body["manifests"]}
    assert set(got) == {sig, sbom}
    assert got[sig] == {"mediaType": OCI_MANIFEST, "digest": sig, "size": sig_size,
                        "artifactType": "application/vnd.dev.cosign.sig",
                        "annotations": {"k": "v"}}
    assert "OCI-Filters-Applied" not in r.headers

    r = wharf("GET", f"/v2/ref/referrers/{sd}",
              params={"artifactType": "application/spdx+json"})
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [sbom]
    # a literal, unescaped '+' in the query still matches
    r = wharf("GET", f"/v2/ref/referrers/{sd}?artifactType=application/spdx+json")
    assert [m["digest"] for m in r.json()["manifests"]] == [sbom]


def test_referrers_of_missing_subject_and_unknown_repo(wharf):
    ghost = sha256(b"subject pushed later")
    d, _ = push_referrer(wharf, "early", ghost, 10, "application/x-early", b"e")
    r = wharf("GET", f"/v2/early/referrers/{ghost}")
    assert [m["digest"] for m in r.json()["manifests"]] == [d]
    r = wharf("GET", f"/v2/nobody/referrers/{ghost}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    r = wharf("GET", "/v2/early/referrers/sha256:short")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_referrers_pagination(wharf):
    sd, sm = wharf.push_image("refpage", "v1")
    made = sorted(push_referrer(wharf, "refpage", sd, 1, "application/x-n", b"%d" % i)[0]
                  for i in range(9))
    seen, url = [], f"/v2/refpage/referrers/{sd}?n=4"
    while url:
        r = wharf("GET", url)
        page = r.json()["manifests"]
        assert len(page) <= 4
        seen += [m["digest"] for m in page]
        url = next_link(r)
    assert seen == made


def test_referrers_tag_schema_index_is_included(wharf):
    """An older client (no referrers API) keeps an index under tag sha256-<hex>."""
    sd, sm = wharf.push_image("legacy", "v1")
    # one referrer pushed the modern way, one known only through the fallback index
    modern, _ = push_referrer(wharf, "legacy", sd, 1, "application/x-modern", b"m")
    cfg = wharf.push_blob("legacy", b"{}")
    blob = wharf.push_blob("legacy", b"old")
    old = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/x-old", "digest": cfg, "size": 2},
           "layers": [{"mediaType": "application/octet-stream", "digest": blob, "size": 3}]}
    old_digest = wharf.push_manifest("legacy", "old-sig", old)
    old_size = len(json.dumps(old).encode())
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": old_digest, "size": old_size,
         "artifactType": "application/x-old"},
        {"mediaType": OCI_MANIFEST, "digest": modern, "size": 1,
         "artifactType": "application/x-modern"}]}
    wharf.push_manifest("legacy", "sha256-" + sd.split(":")[1], index, OCI_INDEX)
    got = [m["digest"] for m in wharf("GET", f"/v2/legacy/referrers/{sd}").json()["manifests"]]
    assert sorted(got) == sorted([modern, old_digest]) and len(got) == 2
    r = wharf("GET", f"/v2/legacy/referrers/{sd}", params={"artifactType": "application/x-old"})
    assert [m["digest"] for m in r.json()["manifests"]] == [old_digest]
