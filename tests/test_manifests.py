"""Manifest endpoints: every manifest kind, byte-exact storage, validation."""

import json

import pytest

from conftest import (DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_EMPTY, OCI_INDEX,
                      OCI_LAYER, OCI_MANIFEST, error_code, sha256, sha512)


def test_put_get_head_by_tag_and_digest_byte_exact(wharf):
    cd = wharf.push_blob("img", b"{}")
    ld = wharf.push_blob("img", b"layer")
    # unusual but valid formatting must survive byte for byte
    raw = ('{\n  "schemaVersion": 2,\n  "mediaType": "%s",\n  "config": {"mediaType": "%s", '
           '"digest": "%s", "size": 2},\n  "layers": [{"mediaType": "%s", "digest": "%s", '
           '"size": 5}],  "annotations": {"z": "1", "a": "2"}\n}\n') % (
        OCI_MANIFEST, OCI_CONFIG, cd, OCI_LAYER, ld)
    raw = raw.encode()
    r = wharf("PUT", "/v2/img/manifests/v1", data=raw, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    d = sha256(raw)
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers["Location"] == f"/v2/img/manifests/{d}"
    for ref in ("v1", d):
        g = wharf("GET", f"/v2/img/manifests/{ref}")
        assert g.status_code == 200 and g.content == raw
        assert g.headers["Content-Type"] == OCI_MANIFEST
        assert g.headers["Docker-Content-Digest"] == d
        h = wharf("HEAD", f"/v2/img/manifests/{ref}")
        assert h.status_code == 200 and h.content == b""
        assert h.headers["Content-Length"] == str(len(raw))
        assert h.headers["Docker-Content-Digest"] == d


def test_put_by_digest_checks_digest(wharf):
    _, m = wharf.push_image("bydigest", "t")
    raw = json.dumps(m, indent=1).encode()
    r = wharf("PUT", f"/v2/bydigest/manifests/{sha256(raw)}", data=raw,
              headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    r = wharf("PUT", f"/v2/bydigest/manifests/{sha256(b'other')}", data=raw,
              headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = wharf("PUT", f"/v2/bydigest/manifests/{sha512(raw)}", data=raw,
              headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    assert wharf("GET", f"/v2/bydigest/manifests/{sha512(raw)}").content == raw


def test_docker_schema2_and_manifest_list(wharf):
    cd = wharf.push_blob("dock", b'{"architecture":"amd64"}')
    ld = wharf.push_blob("dock", b"tar bytes")
    m = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
         "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": cd, "size": 24},
         "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                     "digest": ld, "size": 9}]}
    md = wharf.push_manifest("dock", "amd64", m, DOCKER_MANIFEST)
    raw = json.dumps(m).encode()
    lst = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": md, "size": len(raw),
         "platform": {"architecture": "amd64", "os": "linux"}}]}
    ld2 = wharf.push_manifest("dock", "latest", lst, DOCKER_LIST)
    g = wharf("GET", "/v2/dock/manifests/latest")
    assert g.headers["Content-Type"] == DOCKER_LIST and g.headers["Docker-Content-Digest"] == ld2


def test_index_requires_children(wharf):
    md, m = wharf.push_image("idx", "amd64")
    size = len(json.dumps(m).encode())
    idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": md, "size": size,
         "platform": {"architecture": "amd64", "os": "linux"}}]}
    wharf.push_manifest("idx", "multi", idx, OCI_INDEX)
    missing = sha256(b"no such manifest")
    idx["manifests"].append({"mediaType": OCI_MANIFEST, "digest": missing, "size": 3})
    r = wharf("PUT", "/v2/idx/manifests/broken", data=json.dumps(idx),
              headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert wharf("GET", "/v2/idx/manifests/broken").status_code == 404


def test_missing_blob_is_manifest_blob_unknown(wharf):
    cd = wharf.push_blob("mbu", b"{}")
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": 2},
         "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b"absent"), "size": 6}]}
    r = wharf("PUT", "/v2/mbu/manifests/t", data=json.dumps(m),
              headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    # a blob in another repository does not count
    other = wharf.push_blob("elsewhere", b"absent")
    assert other == sha256(b"absent")
    r = wharf("PUT", "/v2/mbu/manifests/t", data=json.dumps(m),
              headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_artifact_with_custom_config_and_artifact_type(wharf):
    cfg = wharf.push_blob("art", b"{}")
    blob = wharf.push_blob("art", b"helm chart bytes")
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "artifactType": "application/vnd.example.thing",
         "config": {"mediaType": OCI_EMPTY, "digest": cfg, "size": 2},
         "layers": [{"mediaType": "application/vnd.example.layer", "digest": blob,
                     "size": 16, "annotations": {"org.opencontainers.image.title": "x"}}]}
    d = wharf.push_manifest("art", "v1", m)
    assert wharf("GET", f"/v2/art/manifests/{d}").json()["artifactType"] == \
        "application/vnd.example.thing"
    chart_json = b'{"name":"c","version":"1.0.0"}'
    chart_cfg = wharf.push_blob("art", chart_json)
    m2 = {"schemaVersion": 2,
          "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                     "digest": chart_cfg, "size": len(chart_json)},
          "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                      "digest": blob, "size": 16}]}
    wharf.push_manifest("art", "chart", m2)


def test_delete_by_tag_and_by_digest(wharf):
    d, _ = wharf.push_image("del", "a")
    wharf.push_manifest("del", "b", wharf("GET", f"/v2/del/manifests/{d}").content)
    assert wharf("DELETE", "/v2/del/manifests/a").status_code == 202
    assert wharf("GET", "/v2/del/manifests/a").status_code == 404
    assert wharf("GET", "/v2/del/manifests/b").status_code == 200
    assert wharf("GET", "/v2/del/tags/list").json()["tags"] == ["b"]
    assert wharf("DELETE", f"/v2/del/manifests/{d}").status_code == 202
    for ref in ("b", d):
        r = wharf("GET", f"/v2/del/manifests/{ref}")
        assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    assert wharf("GET", "/v2/del/tags/list").json()["tags"] == []
    r = wharf("DELETE", f"/v2/del/manifests/{d}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"


def test_retag_moves_tag(wharf):
    d1, _ = wharf.push_image("mv", "latest", layers=[b"1"])
    d2, _ = wharf.push_image("mv", "latest", layers=[b"2"])
    assert d1 != d2
    assert wharf("GET", "/v2/mv/manifests/latest").headers["Docker-Content-Digest"] == d2
    assert wharf("GET", f"/v2/mv/manifests/{d1}").status_code == 200


def test_manifest_size_limit(wharf):
    cd = wharf.push_blob("big", b"{}")
    base = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": 2}, "layers": []}

    def sized(n):
        m = dict(base, annotations={"pad": ""})
        raw = json.dumps(m).encode()
        m["annotations"]["pad"] = "x" * (n - len(raw))
        raw = json.dumps(m).encode()
        assert len(raw) == n
        return raw

    limit = 4 * 1024 * 1024
    r = wharf("PUT", "/v2/big/manifests/max", data=sized(limit),
              headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    r = wharf("PUT", "/v2/big/manifests/over", data=sized(limit + 1),
              headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413 and error_code(r) == "SIZE_INVALID"

    def chunked():  # no Content-Length: the limit holds while reading
        raw = sized(limit + 10)
        for i in range(0, len(raw), 1 << 20):
            yield raw[i:i + (1 << 20)]

    r = wharf("PUT", "/v2/big/manifests/over", data=chunked(),
              headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413 and error_code(r) == "SIZE_INVALID"
    assert wharf("GET", "/v2/big/manifests/over").status_code == 404


@pytest.mark.parametrize("body,ctype,why", [
    (b"{not json", OCI_MANIFEST, "JSON"),
    (b"[]", OCI_MANIFEST, "JSON"),
    (b'{"schemaVersion":1}', OCI_MANIFEST, "schemaVersion"),
    (b'{"schemaVersion":2,"layers":[]}', OCI_MANIFEST, "config"),
    (b'{"schemaVersion":2}', OCI_INDEX, "manifests"),
    (b'{"schemaVersion":2,"manifests":[]}', OCI_MANIFEST, "config"),
    (b'{"schemaVersion":2,"mediaType":"%s","manifests":[]}' % OCI_INDEX.encode(),
     OCI_MANIFEST, "does not match"),
    (b'{"schemaVersion":2,"manifests":[]}', "application/json", "unsupported"),
    (b'{"schemaVersion":2,"manifests":[]}', "application/vnd.docker.distribution.manifest.v1+json",
     "unsupported"),
    (b'{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:abc","size":1}]}',
     OCI_INDEX, "digest"),
    (b'{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"md5:abc","size":1}]}',
     OCI_INDEX, "unsupported algorithm"),
    (b"", OCI_MANIFEST, "JSON"),
])
def test_malformed_manifests(wharf, body, ctype, why):
    r = wharf("PUT", "/v2/bad/manifests/t", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 400, r.text
    assert error_code(r) == "MANIFEST_INVALID"
    assert why in r.json()["errors"][0]["message"]


def test_unknown_manifest_and_bad_references(wharf):
    r = wharf("GET", "/v2/nothing/manifests/latest")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    # neither a tag nor a digest: no such manifest, as the spec answers a GET (issue 14)
    for bad in ("sha256:1234", "-bad-tag", "md5:" + "a" * 32, "a:b"):
        r = wharf("GET", f"/v2/nothing/manifests/{bad}")
        assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN", bad
        assert "neither a tag nor a digest" in r.json()["errors"][0]["message"]
        r = wharf("HEAD", f"/v2/nothing/manifests/{bad}")
        assert r.status_code == 404, bad
    r = wharf("PUT", "/v2/nothing/manifests/" + "t" * 129, data=b"{}",
              headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "TAG_INVALID"
