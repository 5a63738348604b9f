"""The core under hostile and unlucky conditions, over real HTTP: refusals that reach a client
still sending its body, parameters PostgreSQL cannot store, connections that hold slots
without using them, blobs whose bytes went missing, a full disk and a read-only one."""

import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import OCI_MANIFEST, WHARF, error_code, sha256, start_wharf

MIB = 1024 * 1024


def conn(server, timeout=30):
    host, port = server.host.split(":")
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def test_a_refusal_reaches_a_client_still_sending_its_body(wharf):
    """416 for an out-of-order chunk is decided before the body is read; the client must read
    it (with its Range) instead of a broken pipe, again and again on one connection."""
    r = wharf("POST", "/v2/drain/app/blobs/uploads/")
    loc = r.headers["Location"]
    r = wharf("PATCH", loc, data=b"0123456789", headers={"Content-Range": "0-9"})
    assert r.status_code == 202 and r.headers["Range"] == "0-9"
    chunk = os.urandom(MIB)
    c = conn(wharf)
    for _ in range(25):
        c.request("PATCH", loc, body=chunk, headers={
            "Content-Range": f"100-{100 + MIB - 1}", "Content-Type": "application/octet-stream"})
        resp = c.getresponse()
        body = resp.read()
        assert resp.status == 416, body
        assert resp.getheader("Range") == "0-9"
        assert json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    # Other refusals decided before the body: unknown session, bad digest, oversized manifest.
    cases = [
        ("PATCH", "/v2/drain/app/blobs/uploads/6f1c2a47-8d52-4a43-9b7e-2b8f5a0c1d11", chunk, 404,
         "BLOB_UPLOAD_UNKNOWN"),
        ("POST", "/v2/drain/app/blobs/uploads/?digest=sha256:nothex", chunk, 400,
         "DIGEST_INVALID"),
        ("PUT", "/v2/drain/app/manifests/big", b"{" + b" " * (5 * MIB) + b"}", 413,
         "SIZE_INVALID"),
        ("PUT", "/v2/Bad_Name/manifests/v1", chunk, 400, "NAME_INVALID"),
    ]
    for method, path, body, status, code in cases * 3:
        c.request(method, path, body=body, headers={"Content-Type": OCI_MANIFEST})
        resp = c.getresponse()
        got = resp.read()
        assert resp.status == status and json.loads(got)["errors"][0]["code"] == code, got
    c.close()
    # The session is where it was.
    assert wharf("GET", loc).headers["Range"] == "0-9"


def test_a_body_past_the_drain_limit_is_answered_and_the_connection_closed(tmp_path):
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[limits]\ndrain_max_bytes = 1048576\n")
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        loc = s("POST", "/v2/drain/app/blobs/uploads/").headers["Location"]
        # Announces 8 MiB and sends none of it: too much to read just to refuse it, so the
        # answer comes at once and says the connection closes.
        sock = s.send_raw(
            f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Range: 5-{5 + 8 * MIB - 1}\r\n"
            f"Content-Length: {8 * MIB}\r\n\r\n".encode(), close=False)
        sock.settimeout(10)
        head = sock.recv(65536).decode()
        assert head.startswith("HTTP/1.1 416"), head
        assert "connection: close" in head.lower(), head
        sock.close()
    finally:
        s.stop()


def test_nul_bytes_in_parameters_are_refused(wharf):
    wharf.push_image("nul/app", "v1")
    for path in ["/v2/nul/app/tags/list?last=%00", "/v2/_catalog?last=a%00b",
                 "/v2/nul/app/tags/list?n=1&last=v%001"]:
        r = wharf("GET", path)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert "NUL" in r.json()["errors"][0]["message"]


def test_deleting_a_blob_in_one_repository_leaves_it_in_the_others(wharf):
    data = b"shared between two repositories"
    d = wharf.push_blob("one/app", data)
    wharf.push_blob("two/app", data)
    assert wharf("DELETE", f"/v2/one/app/blobs/{d}").status_code == 202
    assert wharf("HEAD", f"/v2/one/app/blobs/{d}").status_code == 404
    r = wharf("GET", f"/v2/two/app/blobs/{d}")
    assert r.status_code == 200 and r.content == data


def blob_file(server, digest):
    alg, hexd = digest.split(":")
    return Path(server.data_dir) / "blobs" / alg / hexd[:2] / hexd


@pytest.mark.parametrize("damage", ["missing", "truncated", "grown"])
def test_a_blob_whose_bytes_are_gone_is_not_served(tmp_path, damage):
    s = start_wharf(tmp_path / "data")
    try:
        data = os.urandom(4096)
        d = s.push_blob("fault/app", data)
        f = blob_file(s, d)
        if damage == "missing":
            f.unlink()
        elif damage == "truncated":
            f.write_bytes(data[:100])
        else:
            f.write_bytes(data + b"extra")
        for method in ("HEAD", "GET"):
            r = s(method, f"/v2/fault/app/blobs/{d}")
            assert r.status_code == 404, (method, r.status_code)
            if method == "GET":
                assert error_code(r) == "BLOB_UNKNOWN"
        s.wait_log("blob_missing", d)
        # Not mounted elsewhere either: the client is asked to upload it.
        r = s("POST", "/v2/fault/other/blobs/uploads/", params={"mount": d, "from": "fault/app"})
        assert r.status_code == 202
        # The next push of the digest repairs it.
        s.push_blob("fault/app", data)
        r = s("GET", f"/v2/fault/app/blobs/{d}")
        assert r.status_code == 200 and r.content == data
        assert s("HEAD", f"/v2/fault/app/blobs/{d}").status_code == 200
    finally:
        s.stop()


def test_the_client_refuses_bytes_that_do_not_match_their_digest(tmp_path):
    s = start_wharf(tmp_path / "data")
    try:
        (tmp_path / "f.txt").write_bytes(b"the real content")
        r = subprocess.run([str(WHARF), "push", f"{s.host}/verify/app:v1", "f.txt"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        d = sha256(b"the real content")
        blob_file(s, d).write_bytes(b"the fake content")  # same size, other bytes
        out = tmp_path / "out"
        r = subprocess.run([str(WHARF), "pull", f"{s.host}/verify/app:v1", "-o", str(out)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 5, (r.returncode, r.stderr)
        assert "digest" in r.stderr.lower() and d in r.stderr, r.stderr
        assert r.stderr.strip().count("\n") == 0, r.stderr
        assert not (out / "f.txt").exists()
    finally:
        s.stop()


def test_parameters_and_connections_limits_are_validated(tmp_path):
    cfg = tmp_path / "c.toml"
    for text in ["[limits]\nmax_connections = 0\n", "[limits]\nheader_timeout_secs = 0\n",
                 "[limits]\nidle_timeout_secs = 0\n"]:
        cfg.write_text(text)
        r = subprocess.run([str(WHARF), "serve", "--data-dir", str(tmp_path / "d"), "--config",
                            str(cfg), "--listen", "127.0.0.1:0"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode != 0 and "must be positive" in r.stderr, r.stderr


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def closed_by_peer(sock):
    """Whether the server has closed this connection (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):  # an answer (a timeout's 400) may come before the close
            pass
        return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_connections_cannot_starve_the_server(tmp_path):
    if raise_fd_limit(4096) < 2400:
        pytest.fail("the test needs 2,400 open files (ulimit -n)")
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[limits]\nheader_timeout_secs = 3\nidle_timeout_secs = 4\n"
                   "body_idle_timeout_secs = 5\n")
    s = start_wharf(tmp_path / "data", config=cfg)
    host, port = s.host.split(":")
    socks = {"idle": [], "slow": [], "stalled": []}
    try:
        uploads = [s("POST", f"/v2/stall/u{i % 7}/blobs/uploads/").headers["Location"]
                   for i in range(300)]
        for _ in range(1100):
            socks["idle"].append(socket.create_connection((host, int(port))))
        for _ in range(500):
            c = socket.create_connection((host, int(port)))
            c.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks["slow"].append(c)
        for loc in uploads:
            c = socket.create_connection((host, int(port)))
            c.sendall(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: {MIB}\r\n"
                      f"Content-Type: application/octet-stream\r\n\r\n".encode() + b"x" * 1000)
            socks["stalled"].append(c)
        started = time.monotonic()
        # Meanwhile another client pushes and pulls, each request answered within a second.
        other = requests.Session()
        for i in range(5):
            t = time.monotonic()
            layer = os.urandom(64 * 1024)
            d = sha256(layer)
            # Chunked, so the upload goes through the per-session lock that stalled
            # uploaders hold for their own sessions.
            loc = other.post(f"{s.url}/v2/busy/app{i}/blobs/uploads/", timeout=5)
            assert loc.status_code == 202
            loc = s.url + loc.headers["Location"]
            r = other.patch(loc, data=layer, timeout=5)
            assert r.status_code == 202, r.text
            assert other.put(loc, params={"digest": d}, timeout=5).status_code == 201
            s.push_manifest(f"busy/app{i}", "v1", {
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                           "digest": s.push_blob(f"busy/app{i}", b"{}"), "size": 2},
                "layers": [{"mediaType": "application/octet-stream", "digest": d,
                            "size": len(layer)}]})
            r = other.get(f"{s.url}/v2/busy/app{i}/blobs/{d}", timeout=5)
            assert r.status_code == 200 and r.content == layer
            assert time.monotonic() - t < 1.0 * 4, "push and pull of one image took too long"
        # Each single request (not just the whole image) is fast.
        t = time.monotonic()
        assert other.get(f"{s.url}/v2/busy/app0/manifests/v1",
                         headers={"Accept": OCI_MANIFEST}, timeout=5).status_code == 200
        assert time.monotonic() - t < 1.0
        # After their timeouts, the server has closed every one of them.
        deadline = started + 30
        left = {k: list(v) for k, v in socks.items()}
        while any(left.values()) and time.monotonic() < deadline:
            for k in left:
                left[k] = [c for c in left[k] if not closed_by_peer(c)]
            time.sleep(0.2)
        assert not any(left.values()), {k: len(v) for k, v in left.items()}
        # And the server still serves.
        assert other.get(f"{s.url}/v2/", timeout=5).status_code == 200
    finally:
        for group in socks.values():
            for c in group:
                c.close()
        s.stop()


def test_beyond_the_connection_cap_new_connections_wait(tmp_path):
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[limits]\nmax_connections = 20\nidle_timeout_secs = 60\n")
    s = start_wharf(tmp_path / "data", config=cfg)
    host, port = s.host.split(":")
    held = []
    try:
        for _ in range(20):
            c = socket.create_connection((host, int(port)))
            c.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
            held.append(c)
        waiting = socket.create_connection((host, int(port)))  # the kernel queues it
        waiting.settimeout(1.5)
        waiting.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(socket.timeout):
            waiting.recv(4096)
        held.pop().close()
        waiting.settimeout(10)
        assert waiting.recv(4096).startswith(b"HTTP/1.1 200")
        s.wait_log("connection limit reached")
        waiting.close()
    finally:
        for c in held:
            c.close()
        s.stop()


def test_read_only_mode_serves_pulls_only(tmp_path):
    s = start_wharf(tmp_path / "data")
    digest, _ = s.push_image("ro/app", "v1")
    s.stop()
    s = start_wharf(tmp_path / "data", "--read-only")
    try:
        r = s("GET", "/v2/ro/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
        for method, path in [("POST", "/v2/ro/app/blobs/uploads/"),
                             ("PUT", "/v2/ro/app/manifests/v2"),
                             ("DELETE", f"/v2/ro/app/manifests/{digest}")]:
            r = s(method, path, data=b"{}")
            assert r.status_code == 405 and error_code(r) == "UNSUPPORTED", (method, r.text)
            assert "read-only" in r.json()["errors"][0]["message"]
    finally:
        s.stop()


class SmallDisk:
    """A tmpfs of `size` for the data directory: a disk that fills and can turn read-only."""

    def __init__(self, path, size):
        self.path = path
        path.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"the disk-fault tests mount a tmpfs (as root): {r.stderr.strip()}")

    def fill(self):
        """Takes every free byte, in a file that `free` removes."""
        with open(self.path / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * MIB)
            except OSError:
                pass
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass

    def free(self):
        (self.path / "filler").unlink()

    def close(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    d = SmallDisk(tmp_path / "disk", "64m")
    yield d
    d.close()


def test_a_full_disk_answers_507_and_uploads_resume(small_disk):
    s = start_wharf(small_disk.path)  # the log stays off the small disk
    try:
        loc = s("POST", "/v2/full/app/blobs/uploads/").headers["Location"]
        first = os.urandom(2 * MIB)
        r = s("PATCH", loc, data=first, headers={"Content-Range": f"0-{len(first) - 1}"})
        assert r.status_code == 202
        cancel_me = s("POST", "/v2/full/app/blobs/uploads/").headers["Location"]
        assert s("PATCH", cancel_me, data=os.urandom(MIB)).status_code == 202
        small_disk.fill()
        # A chunk cut by ENOSPC: 507 with the OCI body, and the session stays where it was.
        second = os.urandom(8 * MIB)
        r = s("PATCH", loc, data=second,
              headers={"Content-Range": f"{len(first)}-{len(first) + len(second) - 1}"})
        assert r.status_code == 507, r.text
        assert r.json()["errors"][0]["message"].startswith("the registry's storage is full")
        assert s("GET", loc).headers["Range"] == f"0-{len(first) - 1}"
        # Monolithic pushes too.
        r = s("POST", "/v2/full/app/blobs/uploads/", params={"digest": sha256(second)},
              data=second)
        assert r.status_code == 507, r.text
        # Cancelling gives its bytes back even when the disk is full.
        assert s("DELETE", cancel_me).status_code in (204, 507)
        uploads = list((small_disk.path / "uploads").iterdir())
        assert len(uploads) == 1, uploads
        # Space comes back: the upload resumes from its last acknowledged byte.
        small_disk.free()
        r = s("PATCH", loc, data=second,
              headers={"Content-Range": f"{len(first)}-{len(first) + len(second) - 1}"})
        assert r.status_code == 202, r.text
        d = sha256(first + second)
        assert s("PUT", loc, params={"digest": d}).status_code == 201
        assert s("GET", f"/v2/full/app/blobs/{d}").content == first + second
    finally:
        s.stop()


def test_a_full_disk_refuses_metadata_writes_with_507(small_disk):
    s = start_wharf(small_disk.path)  # the log stays off the small disk
    try:
        digest, m = s.push_image("full/meta", "v1")
        small_disk.fill()
        codes = []
        for i in range(20):
            m["annotations"] = {"n": str(i) * 20000}
            r = s("PUT", f"/v2/full/meta/manifests/t{i}", data=json.dumps(m),
                  headers={"Content-Type": OCI_MANIFEST})
            codes.append(r.status_code)
            if r.status_code != 201:
                assert r.status_code == 507 and r.json()["errors"], r.text
        assert 507 in codes, codes
        assert s.proc.poll() is None, "the registry died"
        r = s("GET", "/v2/full/meta/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
        small_disk.free()
        s.push_manifest("full/meta", "after", m)
    finally:
        s.stop()


def test_cancelled_and_expired_uploads_leave_no_multipart_upload_in_the_bucket(tmp_path):
    from conftest import garage_unfinished_uploads, s3_env
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[limits]\nupload_expiry_secs = 1\nupload_expiry_check_secs = 1\n")
    s = start_wharf(tmp_path / "data", config=cfg, env=s3_env())
    try:
        before = garage_unfinished_uploads()
        cancelled = s("POST", "/v2/mp/app/blobs/uploads/").headers["Location"]
        expiring = s("POST", "/v2/mp/app/blobs/uploads/").headers["Location"]
        assert s("PATCH", cancelled, data=os.urandom(9 * MIB)).status_code == 202
        assert garage_unfinished_uploads() == before + 2
        assert s("DELETE", cancelled).status_code == 204
        assert garage_unfinished_uploads() == before + 1
        deadline = time.monotonic() + 20
        while "expired idle upload" not in s.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert s("GET", expiring).status_code == 404
        assert garage_unfinished_uploads() == before
        # Each was aborted as a multipart upload (AWS, unlike Garage, keeps a multipart
        # upload whose key is deleted), as Garage's request log shows.
        log = (Path(os.environ["WHARF_TEST_GARAGE_CONFIG"]).parent / "server.log").read_text()
        for loc in (cancelled, expiring):
            upload = loc.rsplit("/", 1)[1]
            assert re.search(rf"DELETE /\S+/uploads/{upload}\?uploadId=", log), upload
    finally:
        s.stop()


def test_acknowledgements_come_after_fsync(tmp_path):
    """Under strace: every 201/202 that acknowledges a write is sent only after the files it
    wrote were synced: the blob's bytes, the directory it was renamed into, the upload file,
    the database. Dropping any of those syncs turns this red."""
    trace = tmp_path / "strace.txt"
    data = tmp_path / "data"
    s = start_wharf(data, wrapper=[
        "strace", "-f", "-qq", "-y", "-s", "16", "-o", str(trace),
        "-e", "trace=fsync,fdatasync,write,writev,sendto,sendmsg"])
    blobs, tmp, uploads, db = (f"{data}/blobs/sha256/", f"{data}/tmp/", f"{data}/uploads/",
                               f"{data}/metadata.db")
    try:
        steps = []

        def step(name, must_sync, fn):
            r = fn()
            assert r.status_code in (201, 202), (name, r.text)
            steps.append((name, must_sync))

        blob = os.urandom(100_000)
        step("monolithic blob", [tmp, blobs, db], lambda: s(
            "POST", "/v2/sync/app/blobs/uploads/", params={"digest": sha256(blob)}, data=blob))
        loc = s("POST", "/v2/sync/app/blobs/uploads/").headers["Location"]
        steps.append(("session", [db]))
        chunk = os.urandom(50_000)
        step("chunk", [uploads, db], lambda: s("PATCH", loc, data=chunk))
        step("close", [uploads, blobs, db],
             lambda: s("PUT", loc, params={"digest": sha256(chunk)}))
        cfg = s.push_blob("sync/app", b"{}")
        steps.append(("config", [tmp, blobs, db]))
        m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
             "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg,
                        "size": 2},
             "layers": [{"mediaType": "application/octet-stream", "digest": sha256(blob),
                         "size": len(blob)}]}
        step("manifest", [db], lambda: s("PUT", "/v2/sync/app/manifests/v1",
                                         data=json.dumps(m),
                                         headers={"Content-Type": OCI_MANIFEST}))
    finally:
        # s.proc is strace: stop the registry it runs, and strace ends with it.
        pid = s.proc.pid
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            os.kill(int(child), signal.SIGTERM)
        s.stop()
    # The paths synced since the previous response, at each response. A syscall another
    # thread interrupted is split in two lines; its path is on the first.
    synced, seen, pending = [], [], {}
    for line in trace.read_text().splitlines():
        pid = line.split(" ", 1)[0]
        start = re.search(r"\b(?:fsync|fdatasync)\(\d+<([^>]*)>", line)
        if start and "<unfinished" in line:
            pending[pid] = start.group(1)
        elif start and line.rstrip().endswith("= 0"):
            synced.append(start.group(1))
        elif "sync resumed>" in line and line.rstrip().endswith("= 0"):
            synced.append(pending.pop(pid, ""))
        elif '"HTTP/1.1 2' in line:
            seen.append(synced)
            synced = []
    assert len(seen) == len(steps), (len(seen), steps)
    for (name, must), paths in zip(steps, seen):
        for m in must:
            assert any(p.startswith(m) for p in paths), f"{name}: acknowledged before {m} " \
                f"was synced (synced: {paths})"


def test_out_of_file_descriptors_is_503_and_passes(tmp_path):
    s = start_wharf(tmp_path / "data")
    try:
        # One connection kept open, and the database's reader connections warmed.
        digest, _ = s.push_image("fds/app", "v1")
        assert s("GET", "/v2/fds/app/manifests/v1").status_code == 200
        open_now = len(os.listdir(f"/proc/{s.proc.pid}/fd"))
        hard = resource.prlimit(s.proc.pid, resource.RLIMIT_NOFILE)[1]
        # No descriptor to spare: the next file the server opens fails with EMFILE.
        resource.prlimit(s.proc.pid, resource.RLIMIT_NOFILE, (open_now, hard))
        r = s("POST", "/v2/fds/app/blobs/uploads/")
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "5"
        assert "out of file descriptors" in r.json()["errors"][0]["message"]
        assert "Too many open files" not in r.text  # the OS text stays in the log
        assert s("GET", "/v2/fds/app/manifests/v1").status_code == 200  # reads go on
        resource.prlimit(s.proc.pid, resource.RLIMIT_NOFILE, (hard, hard))
        assert s("POST", "/v2/fds/app/blobs/uploads/").status_code == 202
    finally:
        s.stop()


def test_storage_turning_read_only_refuses_writes_and_keeps_serving(small_disk):
    """The filesystem under the blobs turns read-only while the registry runs. With metadata
    in PostgreSQL nothing holds a file there open for writing between requests, so the test
    can remount it read-only (SQLite's files would keep Linux from doing so)."""
    from conftest import fresh_postgres_database
    s = start_wharf(small_disk.path, "--metadata-url", fresh_postgres_database())
    try:
        digest, m = s.push_image("ro/app", "v1")
        layer = m["layers"][0]["digest"]
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk.path)], check=True)
        try:
            for method, path, kw in [
                    ("POST", "/v2/ro/app/blobs/uploads/", {}),
                    ("POST", "/v2/ro/app/blobs/uploads/",
                     {"params": {"digest": sha256(b"new")}, "data": b"new"})]:
                r = s(method, path, **kw)
                assert r.status_code == 503, r.text
                assert "read-only" in r.json()["errors"][0]["message"]
            r = s("GET", f"/v2/ro/app/blobs/{layer}")
            assert r.status_code == 200 and sha256(r.content) == layer
            r = s("GET", "/v2/ro/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
            assert s.proc.poll() is None
            s.wait_log("read-only")
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(small_disk.path)], check=True)
        assert s("POST", "/v2/ro/app/blobs/uploads/").status_code == 202
    finally:
        s.stop()
