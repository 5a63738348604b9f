"""Bad input of every kind gets its documented error: never a 500, a panic or a hang."""

import http.client
import json
import socket
import time

import pytest

from conftest import error_code, sha256, start_wharf


def exact(server, method, path):
    """Sends `path` exactly as written (requests would resolve '..' and '.' segments)."""
    host, port = server.host.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, (json.loads(body) if body else None)


@pytest.mark.parametrize("name", ["Upper", "a//b", "a/../b", "..", "a/./b", "-a", "a_",
                                  "a" * 256, "a%2Fb", "a%20b", "a:b"])
def test_invalid_names(wharf, name):
    for method, suffix in (("GET", "/tags/list"), ("GET", "/manifests/latest"),
                           ("PUT", "/manifests/latest"), ("POST", "/blobs/uploads/"),
                           ("GET", "/referrers/" + sha256(b"")),
                           ("HEAD", f"/blobs/{sha256(b'')}")):
        status, body = exact(wharf, method, f"/v2/{name}{suffix}")
        assert status == 400, (method, name, status, body)
        if method != "HEAD":
            assert body["errors"][0]["code"] == "NAME_INVALID"


def test_longest_name_is_accepted(wharf):
    name = "/".join(["a" * 63] * 4)  # 255 characters
    assert len(name) == 255
    wharf.push_image(name, "v1")
    assert wharf("GET", f"/v2/{name}/tags/list").json()["tags"] == ["v1"]


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "A" * 64, "md5:" + "a" * 32,
                                    "sha256", "nonsense", "sha512:" + "a" * 64])
def test_invalid_digests(wharf, digest):
    r = wharf("GET", f"/v2/r/blobs/{digest}")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = wharf("POST", "/v2/r/blobs/uploads/", params={"digest": digest}, data=b"x")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    loc = wharf("POST", "/v2/r/blobs/uploads/").headers["Location"]
    r = wharf("PUT", loc, params={"digest": digest})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_unknown_algorithm_says_so(wharf):
    r = wharf("GET", "/v2/r/blobs/md5:" + "a" * 32)
    assert "unsupported algorithm" in r.json()["errors"][0]["message"]


def test_unknown_endpoint_and_method(wharf):
    r = wharf("GET", "/v2/r/nonsense/x")
    assert r.status_code == 404 and error_code(r) == "UNSUPPORTED"
    r = wharf("POST", "/v2/r/manifests/latest")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"
    assert wharf("GET", "/elsewhere").status_code == 404


def cut_short(server, raw):
    """Sends `raw`, a request whose body stops early, half-closes, and returns the answer."""
    sock = server.send_raw(raw, close=False)
    sock.shutdown(socket.SHUT_WR)
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    sock.close()
    return reply.decode(errors="replace")


def test_half_body_then_disconnect_leaves_nothing(wharf):
    data = b"x" * 100_000
    d = sha256(data)
    head = (f"POST /v2/half/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    # The client stops sending (half-closes): the server's answer says the body was cut, and
    # reading it is what tells the test the server is done with the request.
    assert cut_short(wharf, head + data[:40_000]).startswith("HTTP/1.1 400")
    loc = wharf("POST", "/v2/half/blobs/uploads/").headers["Location"]
    assert wharf("PATCH", loc, data=b"a" * 10).status_code == 202
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    reply = cut_short(wharf, head + data[:50_000])
    assert reply.startswith("HTTP/1.1 400") and "BLOB_UPLOAD_INVALID" in reply, reply
    # nothing of the broken requests became visible, and the session is where it was
    assert wharf("HEAD", f"/v2/half/blobs/{d}").status_code == 404
    assert wharf("GET", loc).headers["Range"] == "0-9"
    assert wharf("PATCH", loc, data=b"b" * 5).headers["Range"] == "0-14"
    assert wharf("PUT", loc, params={"digest": sha256(b"a" * 10 + b"b" * 5)}).status_code == 201
    assert wharf("GET", "/v2/").status_code == 200
    if wharf.backend != "s3":
        assert list((wharf.data_dir / "tmp").iterdir()) == []
    assert "panicked" not in wharf.log()


def test_stalled_body_times_out(tmp_path):
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[limits]\nbody_idle_timeout_secs = 1\n")
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        loc = s("POST", "/v2/stall/blobs/uploads/").headers["Location"]
        head = (f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n").encode()
        sock = s.send_raw(head + b"y" * 10, close=False)
        started = time.time()
        sock.settimeout(15)
        reply = sock.recv(4096).decode(errors="replace")
        waited = time.time() - started
        sock.close()
        assert reply.startswith("HTTP/1.1 400"), reply
        assert "BLOB_UPLOAD_INVALID" in reply and "no data received" in reply
        assert waited < 10
        assert s("GET", loc).headers["Range"] == "0-0"
    finally:
        s.stop()


def test_no_500_in_log_after_bad_input(wharf):
    r = wharf("PUT", "/v2/x/manifests/t", data=b"\xff\xfe", headers={"Content-Type": "a/b"})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", r.text
    r = wharf("PATCH", "/v2/x/blobs/uploads/zz", data=b"x")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN", r.text
    r = wharf("GET", "/v2/x/blobs/sha256:" + "0" * 64, headers={"Range": "bytes=garbage"})
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN", r.text
    assert "ERROR" not in wharf.log() and "panicked" not in wharf.log()
