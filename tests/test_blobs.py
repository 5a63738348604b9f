"""Blob endpoints and every upload style real clients use, over real HTTP."""

import os

import pytest

from conftest import error_code, sha256, sha512


def test_base_endpoint(wharf):
    r = wharf("GET", "/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert wharf("GET", "/v2").status_code == 200


def test_monolithic_post_then_get_head_range_delete(wharf):
    data = os.urandom(100_000)
    d = sha256(data)
    r = wharf("POST", "/v2/mono/blobs/uploads/", params={"digest": d}, data=data)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/mono/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d

    r = wharf("GET", f"/v2/mono/blobs/{d}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers["Content-Length"] == str(len(data))

    r = wharf("HEAD", f"/v2/mono/blobs/{d}")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Length"] == str(len(data))

    r = wharf("GET", f"/v2/mono/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = wharf("GET", f"/v2/mono/blobs/{d}", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = wharf("GET", f"/v2/mono/blobs/{d}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and error_code(r) == "RANGE_INVALID"
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"

    r = wharf("DELETE", f"/v2/mono/blobs/{d}")
    assert r.status_code == 202
    r = wharf("GET", f"/v2/mono/blobs/{d}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    assert wharf("DELETE", f"/v2/mono/blobs/{d}").status_code == 404


def test_blob_is_per_repository(wharf):
    d = wharf.push_blob("one", b"only in one")
    r = wharf("GET", f"/v2/two/blobs/{d}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    assert wharf("HEAD", f"/v2/two/blobs/{d}").status_code == 404


def test_one_copy_on_disk_across_repositories(wharf):
    if wharf.backend == "s3":
        pytest.skip("counts files of the filesystem store")
    data = os.urandom(4096)
    d = sha256(data)
    for repo in ("x1", "x2", "x3"):
        wharf.push_blob(repo, data)
    files = [p for p in (wharf.data_dir / "blobs").rglob("*") if p.is_file()]
    assert [p.name for p in files] == [d.split(":")[1]]


def test_sha512_monolithic_and_chunked(wharf):
    data = os.urandom(70_000)
    d = sha512(data)
    r = wharf("POST", "/v2/s512/blobs/uploads/", params={"digest": d}, data=data)
    assert r.status_code == 201
    assert wharf("GET", f"/v2/s512/blobs/{d}").content == data
    loc = wharf("POST", "/v2/s512b/blobs/uploads/").headers["Location"]
    assert wharf("PATCH", loc, data=data).status_code == 202
    r = wharf("PUT", loc, params={"digest": d})
    assert r.status_code == 201
    assert wharf("GET", f"/v2/s512b/blobs/{d}").content == data


def start_upload(wharf, repo):
    r = wharf("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    assert r.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert r.headers["Range"] == "0-0"
    assert r.headers["Docker-Upload-UUID"]
    assert int(r.headers["OCI-Chunk-Min-Length"]) > 0
    return r.headers["Location"]


def test_post_then_put_with_body(wharf):
    data = b"whole body in the PUT"
    loc = start_upload(wharf, "p")
    r = wharf("PUT", loc, params={"digest": sha256(data)}, data=data)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/p/blobs/{sha256(data)}"
    assert wharf("GET", f"/v2/p/blobs/{sha256(data)}").content == data


@pytest.mark.parametrize("prefix", ["", "bytes="])
def test_ordered_chunks_and_status(wharf, prefix):
    data = os.urandom(3 * 65536 + 17)
    chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    loc = start_upload(wharf, "chunked")
    off = 0
    for c in chunks[:-1]:
        r = wharf("PATCH", loc, data=c, headers={
            "Content-Range": f"{prefix}{off}-{off + len(c) - 1}",
            "Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        off += len(c)
        assert r.headers["Range"] == f"0-{off - 1}"
        loc = r.headers["Location"]
        s = wharf("GET", loc)
        assert s.status_code == 204 and s.headers["Range"] == f"0-{off - 1}"
    # the last chunk travels inside the PUT
    last = chunks[-1]
    r = wharf("PUT", loc, params={"digest": sha256(data)}, data=last,
              headers={"Content-Range": f"{off}-{off + len(last) - 1}"})
    assert r.status_code == 201, r.text
    assert wharf("GET", f"/v2/chunked/blobs/{sha256(data)}").content == data
    # the session is gone once complete
    r = wharf("GET", loc)
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"


def test_out_of_order_and_overlapping_chunks_get_416(wharf):
    loc = start_upload(wharf, "order")
    assert wharf("PATCH", loc, data=b"abcd", headers={"Content-Range": "0-3"}).status_code == 202
    for bad in ("0-3", "2-5", "5-9", "10-12"):
        r = wharf("PATCH", loc, data=b"xxxx"[: int(bad.split("-")[1]) - int(bad.split("-")[0]) + 1],
                  headers={"Content-Range": bad})
        assert r.status_code == 416, bad
        assert error_code(r) == "BLOB_UPLOAD_INVALID"
        assert r.headers["Range"] == "0-3"
    # the session is intact and continues from where it was
    r = wharf("PATCH", loc, data=b"ef", headers={"Content-Range": "4-5"})
    assert r.status_code == 202 and r.headers["Range"] == "0-5"
    assert wharf("PUT", loc, params={"digest": sha256(b"abcdef")}).status_code == 201


def test_content_range_that_lies_about_length_is_refused(wharf):
    loc = start_upload(wharf, "lie")
    r = wharf("PATCH", loc, data=b"abc", headers={"Content-Range": "0-9"})
    assert r.status_code == 400 and error_code(r) == "BLOB_UPLOAD_INVALID"
    assert wharf("GET", loc).headers["Range"] == "0-0"
    r = wharf("PATCH", loc, data=b"abc", headers={"Content-Range": "three-bytes"})
    assert r.status_code == 400 and error_code(r) == "BLOB_UPLOAD_INVALID"


def test_streamed_patch_without_content_range(wharf):
    """docker and podman stream the whole blob in one PATCH with chunked encoding."""
    data = os.urandom(1_000_000)
    loc = start_upload(wharf, "stream")

    def gen():
        for i in range(0, len(data), 100_000):
            yield data[i:i + 100_000]

    r = wharf("PATCH", loc, data=gen())
    assert r.status_code == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = wharf("PUT", r.headers["Location"], params={"digest": sha256(data)})
    assert r.status_code == 201
    assert wharf("GET", f"/v2/stream/blobs/{sha256(data)}").content == data


def test_cancel_upload(wharf):
    if wharf.backend == "s3":
        from conftest import garage_unfinished_uploads
        before = garage_unfinished_uploads()
    loc = start_upload(wharf, "cancel")
    assert wharf("PATCH", loc, data=b"partial").status_code == 202
    assert wharf("DELETE", loc).status_code == 204
    r = wharf("PATCH", loc, data=b"more")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert wharf("DELETE", loc).status_code == 404
    if wharf.backend == "s3":
        assert garage_unfinished_uploads() == before  # the multipart upload was aborted
    else:
        assert list((wharf.data_dir / "uploads").iterdir()) == []


def test_wrong_digest_on_put_is_refused_and_nothing_stored(wharf):
    data = b"actual content"
    wrong = sha256(b"other content")
    r = wharf("POST", "/v2/wrong/blobs/uploads/", params={"digest": wrong}, data=data)
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert wharf("HEAD", f"/v2/wrong/blobs/{wrong}").status_code == 404
    loc = start_upload(wharf, "wrong")
    r = wharf("PUT", loc, params={"digest": wrong}, data=data)
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert wharf("HEAD", f"/v2/wrong/blobs/{wrong}").status_code == 404
    assert wharf("HEAD", f"/v2/wrong/blobs/{sha256(data)}").status_code == 404
    if wharf.backend != "s3":  # the bucket is shared; HEAD above is what clients see
        assert [p for p in (wharf.data_dir / "blobs").rglob("*") if p.is_file()] == []
        assert list((wharf.data_dir / "tmp").iterdir()) == []


def test_upload_session_belongs_to_its_repository(wharf):
    loc = start_upload(wharf, "mine")
    other = loc.replace("/v2/mine/", "/v2/theirs/")
    r = wharf("PATCH", other, data=b"x")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"


@pytest.mark.parametrize("uid", ["not-a-uuid", "00000000-0000-0000-0000-000000000000",
                                 "..%2F..%2Fetc%2Fpasswd"])
def test_unknown_upload_sessions(wharf, uid):
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = wharf(method, f"/v2/u/blobs/uploads/{uid}", params={"digest": sha256(b"")})
        assert r.status_code == 404, (method, r.text)
        assert error_code(r) == "BLOB_UPLOAD_UNKNOWN"


def test_put_without_digest(wharf):
    loc = start_upload(wharf, "nodigest")
    r = wharf("PUT", loc, data=b"x")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_cross_repository_mount(wharf):
    d = wharf.push_blob("src", b"shared layer")
    r = wharf("POST", "/v2/dst/blobs/uploads/", params={"mount": d, "from": "src"})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/dst/blobs/{d}"
    assert wharf("GET", f"/v2/dst/blobs/{d}").content == b"shared layer"


def test_mount_from_repository_without_blob_opens_upload(wharf):
    d = wharf.push_blob("has", b"content")
    r = wharf("POST", "/v2/dst2/blobs/uploads/", params={"mount": d, "from": "lacks"})
    assert r.status_code == 202
    loc = r.headers["Location"]
    assert wharf("PUT", loc, params={"digest": d}, data=b"content").status_code == 201
    missing = sha256(b"nowhere")
    r = wharf("POST", "/v2/dst3/blobs/uploads/", params={"mount": missing, "from": "has"})
    assert r.status_code == 202


def test_mount_without_from(wharf):
    d = wharf.push_blob("anywhere", b"findable")
    r = wharf("POST", "/v2/nofrom/blobs/uploads/", params={"mount": d})
    assert r.status_code == 201
    assert wharf("GET", f"/v2/nofrom/blobs/{d}").content == b"findable"


def test_mount_with_bad_input(wharf):
    r = wharf("POST", "/v2/m/blobs/uploads/", params={"mount": "sha256:zz", "from": "a"})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = wharf("POST", "/v2/m/blobs/uploads/", params={"mount": sha256(b"x"), "from": "A/B"})
    assert r.status_code == 400 and error_code(r) == "NAME_INVALID"


def test_empty_blob(wharf):
    d = wharf.push_blob("empty", b"")
    assert d == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    r = wharf("GET", f"/v2/empty/blobs/{d}")
    assert r.status_code == 200 and r.content == b"" and r.headers["Content-Length"] == "0"
    r = wharf("GET", f"/v2/empty/blobs/{d}", headers={"Range": "bytes=0-0"})
    assert r.status_code == 416 and error_code(r) == "RANGE_INVALID"
