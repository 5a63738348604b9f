"""`wharf serve`: defaults, configuration precedence, secure binding, graceful shutdown."""

import os
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import WHARF, free_port, sha256, start_wharf, wait_for_log


def test_defaults_listen_on_5000_and_use_wharf_data(tmp_path):
    """Run with no arguments at all, as README says. Skipped only if 5000 is taken."""
    try:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 5000))
    except OSError:
        pytest.skip("port 5000 is in use on this machine")
    log = tmp_path / "log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([str(WHARF), "serve"], cwd=tmp_path, stdout=f, stderr=f,
                                env={k: v for k, v in os.environ.items()
                                     if not k.startswith("WHARF_")})
    try:
        wait_for_log(log, r"serving on http://127\.0\.0\.1:5000", proc)
        assert requests.get("http://127.0.0.1:5000/v2/").status_code == 200
        assert (tmp_path / "wharf-data" / "metadata.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_precedence_flag_over_env_over_file(tmp_path):
    p_file, p_env, p_flag = free_port(), free_port(), free_port()
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(f'listen = "127.0.0.1:{p_file}"\n')
    s = start_wharf(tmp_path / "d1", config=cfg, listen=None)
    assert s.url.endswith(f":{p_file}")
    s.stop()
    s = start_wharf(tmp_path / "d2", config=cfg, listen=None,
                    env={"WHARF_LISTEN": f"127.0.0.1:{p_env}"})
    assert s.url.endswith(f":{p_env}")
    s.stop()
    s = start_wharf(tmp_path / "d3", config=cfg, listen=f"127.0.0.1:{p_flag}",
                    env={"WHARF_LISTEN": f"127.0.0.1:{p_env}"})
    assert s.url.endswith(f":{p_flag}")
    s.stop()


def test_data_dir_from_file_and_env(tmp_path):
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "from-file"}"\nlisten = "127.0.0.1:0"\n')
    proc_log = tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env["WHARF_CONFIG"] = str(cfg)
    with open(proc_log, "wb") as f:
        proc = subprocess.Popen([str(WHARF), "serve"], stdout=f, stderr=f, env=env)
    try:
        wait_for_log(proc_log, r"serving on", proc)
        assert (tmp_path / "from-file" / "metadata.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("content,message", [
    ("listen = 5\n", "config file"),
    ("lisen = \"127.0.0.1:1\"\n", "unknown field"),
    ("[limits]\nmax_page_size = 0\n", "must be positive"),
])
def test_bad_config_is_one_clear_line(tmp_path, content, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    r = subprocess.run([str(WHARF), "serve", "--config", str(cfg), "--data-dir",
                        str(tmp_path / "d")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("wharf: error:") and message in r.stderr, r.stderr
    assert "panicked" not in r.stderr


def test_listing_and_chunk_limits_come_from_the_config(tmp_path):
    """`limits.max_page_size` caps `n` and sizes pages without it; `limits.chunk_min_length`
    is what uploads are told (README's configuration table)."""
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[limits]\nmax_page_size = 3\nchunk_min_length = 4096\n")
    s = start_wharf(tmp_path / "d", config=cfg)
    try:
        r = s("POST", "/v2/lim/blobs/uploads/")
        assert r.status_code == 202 and r.headers["OCI-Chunk-Min-Length"] == "4096"
        for t in ("a", "b", "c", "d"):
            s.push_image("lim", t)
        r = s("GET", "/v2/lim/tags/list")
        assert r.status_code == 200 and r.json()["tags"] == ["a", "b", "c"], r.text
        assert 'rel="next"' in r.headers["Link"]
        # no [auth]: the log says, once, that anyone who reaches the address may write
        assert s.log().count("access control is off (no [auth] in the configuration)") == 1
        r = s("GET", "/v2/lim/tags/list", params={"n": 4})
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"
        assert s("GET", "/v2/lim/tags/list", params={"n": 3}).status_code == 200
    finally:
        s.stop()


def test_missing_config_file(tmp_path):
    r = subprocess.run([str(WHARF), "serve", "--config", str(tmp_path / "nope.toml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "cannot read config file" in r.stderr


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "d").write_text("")
    r = subprocess.run([str(WHARF), "serve", "--listen", "127.0.0.1:0", "--data-dir",
                        str(tmp_path / "d")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr == f"wharf: error: the data directory {tmp_path / 'd'} is a file, not a directory\n"


def test_non_loopback_without_auth_is_refused(tmp_path):
    r = subprocess.run([str(WHARF), "serve", "--listen", "0.0.0.0:0", "--data-dir",
                        str(tmp_path / "d")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "without authentication" in r.stderr and "--allow-anonymous" in r.stderr


def test_allow_anonymous_permits_wildcard_bind(tmp_path):
    s = start_wharf(tmp_path / "d", "--allow-anonymous", listen="0.0.0.0:0")
    try:
        port = s.url.rsplit(":", 1)[1]
        assert requests.get(f"http://127.0.0.1:{port}/v2/").status_code == 200
    finally:
        s.stop()


def test_help_has_examples():
    out = subprocess.run([str(WHARF), "serve", "--help"], capture_output=True, text=True).stdout
    assert "Examples:" in out and "--listen" in out and "--data-dir" in out
    out = subprocess.run([str(WHARF), "--help"], capture_output=True, text=True).stdout
    assert "Examples:" in out and "serve" in out


def test_sigterm_lets_inflight_upload_finish(tmp_path):
    s = start_wharf(tmp_path / "d")
    data = os.urandom(4 << 20)
    d = sha256(data)
    result = {}

    def slow_body():
        for i in range(0, len(data), 256 << 10):
            yield data[i:i + (256 << 10)]
            time.sleep(0.05)

    def push():
        result["r"] = requests.post(f"{s.url}/v2/graceful/blobs/uploads/",
                                    params={"digest": d}, data=slow_body(), timeout=60)

    t = threading.Thread(target=push)
    t.start()
    # SIGTERM once the server is writing the blob: its temporary file exists.
    assert wait_for_open_file(s, f"{s.data_dir}/tmp/"), "the push never reached the server"
    s.proc.send_signal(signal.SIGTERM)
    t.join(timeout=60)
    assert s.proc.wait(timeout=30) == 0
    assert result["r"].status_code == 201
    assert "shutting down" in s.log()
    s2 = start_wharf(tmp_path / "d")
    try:
        assert s2("GET", f"/v2/graceful/blobs/{d}").content == data
    finally:
        s2.stop()


def wait_for_open_file(server, part, within=10):
    """Waits until the server process has a file open whose path contains `part`."""
    fd_dir = f"/proc/{server.proc.pid}/fd"
    deadline = time.time() + within
    while time.time() < deadline:
        for fd in os.listdir(fd_dir):
            try:
                if part in os.readlink(f"{fd_dir}/{fd}"):
                    return True
            except OSError:
                pass
        time.sleep(0.02)
    return False


def test_upload_resumes_after_restart(tmp_path):
    s = start_wharf(tmp_path / "d")
    loc = s("POST", "/v2/resume/blobs/uploads/").headers["Location"]
    assert s("PATCH", loc, data=b"first half ").status_code == 202
    s.stop(signal.SIGKILL)
    s = start_wharf(tmp_path / "d")
    try:
        r = s("GET", loc)
        assert r.status_code == 204 and r.headers["Range"] == "0-10"
        r = s("PATCH", loc, data=b"second half", headers={"Content-Range": "11-21"})
        assert r.status_code == 202
        whole = b"first half second half"
        assert s("PUT", loc, params={"digest": sha256(whole)}).status_code == 201
        assert s("GET", f"/v2/resume/blobs/{sha256(whole)}").content == whole
    finally:
        s.stop()


def test_shutdown_timeout_bounds_the_wait(tmp_path):
    """A request that never finishes cannot hold the server past shutdown_timeout_secs, and
    its upload session survives for a later resume."""
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[limits]\nshutdown_timeout_secs = 1\nbody_idle_timeout_secs = 120\n")
    s = start_wharf(tmp_path / "d", config=cfg)
    loc = s("POST", "/v2/stuck/blobs/uploads/").headers["Location"]
    sock = s.send_raw(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"
                      .encode(), close=False)
    # SIGTERM once the server holds the chunk's upload file open.
    assert wait_for_open_file(s, f"{s.data_dir}/uploads/"), "the PATCH never reached the server"
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=20) == 0
    assert time.time() - t0 < 10
    sock.close()
    assert "stopping anyway" in s.log()
    s2 = start_wharf(tmp_path / "d", config=cfg)
    try:
        assert s2("GET", loc).headers["Range"] == "0-0"
    finally:
        s2.stop()


def test_debug_log_records_requests(tmp_path):
    s = start_wharf(tmp_path / "d", "--log", "info,wharf_server=debug")
    try:
        assert s("GET", "/v2/some/repo/tags/list").status_code == 404
        deadline = time.time() + 5
        while "/v2/some/repo/tags/list" not in s.log() and time.time() < deadline:
            time.sleep(0.05)
        line = [l for l in s.log().splitlines() if "/v2/some/repo/tags/list" in l][0]
        assert "GET" in line and "404" in line
    finally:
        s.stop()


def test_migrate_sqlite(tmp_path):
    cmd = [str(WHARF), "migrate", "--data-dir", str(tmp_path / "d")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "metadata schema migrated from version 0 to 6"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert again.stdout.strip() == "metadata schema is current (version 6)"


def test_migrate_postgres_then_serve(tmp_path):
    from conftest import fresh_postgres_database
    url = fresh_postgres_database()
    r = subprocess.run([str(WHARF), "migrate", "--metadata-url", url], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and "from version 0 to 6" in r.stdout, r.stderr
    s = start_wharf(tmp_path / "d", env={"WHARF_METADATA_URL": url})
    try:
        s.push_image("pg/app", "v1")
    finally:
        s.stop()
    # a second server on the same database sees what the first wrote
    s = start_wharf(tmp_path / "other", env={"WHARF_METADATA_URL": url})
    try:
        assert s("GET", "/v2/pg/app/tags/list").json()["tags"] == ["v1"]
    finally:
        s.stop()
    r = subprocess.run([str(WHARF), "migrate", "--metadata-url", url], capture_output=True,
                       text=True, timeout=30)
    assert r.stdout.strip() == "metadata schema is current (version 6)"


def test_migrate_refuses_newer_postgres_schema(tmp_path):
    from conftest import fresh_postgres_database
    url = fresh_postgres_database()
    subprocess.run(["psql", url, "-qAtc", "CREATE TABLE wharf_schema (version INTEGER NOT NULL);"
                    " INSERT INTO wharf_schema VALUES (7)"], check=True, capture_output=True)
    for cmd in ([str(WHARF), "migrate", "--metadata-url", url],
                [str(WHARF), "serve", "--metadata-url", url, "--listen", "127.0.0.1:0",
                 "--data-dir", str(tmp_path / "d")]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "newer than this Wharf knows" in r.stderr and "upgrade Wharf" in r.stderr


@pytest.mark.parametrize("url,message", [
    ("mysql://x@y/z", "must be a postgres:// URL"),
    ("postgres://nobody@127.0.0.1:1/none", "cannot"),
])
def test_bad_metadata_url_is_one_clear_line(tmp_path, url, message):
    r = subprocess.run([str(WHARF), "migrate", "--metadata-url", url, "--data-dir",
                        str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("wharf: error:") and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# The first schema exactly as version 1 of Wharf wrote it, to prove that a newer binary
# migrates an older database with an upload in flight.
SQLITE_V1 = """
CREATE TABLE repositories (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE blobs (repo TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)) WITHOUT ROWID;
CREATE INDEX blobs_by_digest ON blobs (digest);
CREATE TABLE manifests (repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,
    size INTEGER NOT NULL, content BLOB NOT NULL, subject TEXT, artifact_type TEXT,
    annotations TEXT, created_at INTEGER NOT NULL, PRIMARY KEY (repo, digest));
CREATE INDEX manifests_by_subject ON manifests (repo, subject) WHERE subject IS NOT NULL;
CREATE TABLE tags (repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,
    updated_at INTEGER NOT NULL, PRIMARY KEY (repo, tag)) WITHOUT ROWID;
CREATE INDEX tags_by_digest ON tags (repo, digest);
CREATE TABLE uploads (id TEXT PRIMARY KEY, repo TEXT NOT NULL, size INTEGER NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


def test_newer_binary_migrates_v1_sqlite_with_upload_in_flight(tmp_path):
    import sqlite3
    data = tmp_path / "d"
    (data / "uploads").mkdir(parents=True)
    uid = "0b7a1f3e-2c4d-4e5f-8a9b-0c1d2e3f4a5b"
    (data / "uploads" / uid).write_bytes(b"started under v1 ")
    db = sqlite3.connect(data / "metadata.db")
    db.executescript(SQLITE_V1)
    db.execute("INSERT INTO repositories VALUES ('old')")
    db.execute("INSERT INTO uploads VALUES (?, 'old', 17, 0, 0)", (uid,))
    db.commit()
    db.close()
    r = subprocess.run([str(WHARF), "migrate", "--data-dir", str(data)], capture_output=True,
                       text=True, timeout=30)
    assert r.stdout.strip() == "metadata schema migrated from version 1 to 6", r.stderr
    s = start_wharf(data)
    try:
        loc = f"/v2/old/blobs/uploads/{uid}"
        assert s("GET", loc).headers["Range"] == "0-16"
        whole = b"started under v1 finished under v2"
        r = s("PUT", loc, params={"digest": sha256(whole)}, data=b"finished under v2",
              headers={"Content-Range": "17-33"})
        assert r.status_code == 201, r.text
        assert s("GET", f"/v2/old/blobs/{sha256(whole)}").content == whole
    finally:
        s.stop()


def test_idle_uploads_expire_active_ones_stay(tmp_path):
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[limits]\nupload_expiry_secs = 2\nupload_expiry_check_secs = 1\n")
    s = start_wharf(tmp_path / "d", config=cfg)
    try:
        idle = s("POST", "/v2/exp/blobs/uploads/").headers["Location"]
        assert s("PATCH", idle, data=b"abandoned").status_code == 202
        active = s("POST", "/v2/exp/blobs/uploads/").headers["Location"]
        sent = b""
        deadline = time.time() + 15
        while s("GET", idle).status_code != 404 and time.time() < deadline:
            r = s("PATCH", active, data=b"x")
            assert r.status_code == 202, r.text
            sent += b"x"
            time.sleep(0.4)
        r = s("GET", idle)
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        assert s("GET", active).headers["Range"] == f"0-{len(sent) - 1}"
        assert s("PUT", active, params={"digest": sha256(sent)}).status_code == 201
        assert list((tmp_path / "d" / "uploads").iterdir()) == []
        s.wait_log("expired idle upload")
    finally:
        s.stop()
