"""Pushing large files: the upload starts while the file is still being hashed, and a file's
digest is remembered between pushes (WHARF_CACHE_DIR) until the file changes. Run against
Wharf and against Distribution 2.8 and 3."""

import json
import os
import re
import subprocess
import threading
import time

from conftest import WHARF, sha256, start_wharf

MiB = 1 << 20


def push_in(env, cwd, *args):
    """`wharf push --format json ARGS big.bin` in `cwd`; the JSON it prints."""
    p = subprocess.run([str(WHARF), "push", "--format", "json", *map(str, args), "big.bin"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def blob_push(env, cwd, ref):
    """`wharf blob push --format json REF big.bin` in `cwd`: one blob and no config, so the
    registry's log shows that blob's requests alone."""
    p = subprocess.run([str(WHARF), "blob", "push", "--format", "json", ref, "big.bin"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def layer(out):
    (blob,) = [b for b in out["blobs"] if b["mediaType"] != "application/vnd.oci.empty.v1+json"]
    return blob


def settled(path):
    """Waits until the file's last change is old enough to be remembered (2 s)."""
    age = time.time() - os.stat(path).st_ctime
    if age < 2.2:
        time.sleep(2.2 - age)


def test_a_large_file_goes_up_while_it_is_hashed(peer_registry, tool_env, tmp_path):
    r = peer_registry
    env = {**tool_env, "WHARF_NO_CACHE": "1"}
    data = os.urandom(24 * MiB)
    (tmp_path / "big.bin").write_bytes(data)
    # 4 MiB chunks: several PATCHes, sent while the other thread hashes
    out = push_in(env, tmp_path, "--chunk-size", "4", f"{r.host}/spec/big:v1")
    b = layer(out)
    assert b["digest"] == sha256(data) and b["size"] == len(data)
    assert b["transfer"] == "uploaded"
    got = r("GET", f"/v2/spec/big/blobs/{sha256(data)}")
    assert got.status_code == 200 and got.content == data

    # The repository has it: the upload that started before the digest was known is
    # cancelled, and the push reports the blob as there.
    again = push_in(env, tmp_path, "--chunk-size", "4", f"{r.host}/spec/big:v2")
    assert layer(again)["transfer"] == "exists"
    assert layer(again)["digest"] == b["digest"]
    if r.kind == "wharf":
        # the cancelled session is gone, not left to expire
        text = r.wait_log('method=DELETE route="upload"')
        assert 'method=DELETE route="upload" repository="spec/big" status=204' in text
        assert list((r.data_dir / "uploads").iterdir()) == []


def requests_for(log, repo):
    """The methods of the blob-upload and blob requests to `repo`, in order."""
    return re.findall(rf'method=(\w+) route="(?:upload|uploads|blob)" repository="{repo}"', log)


def test_a_remembered_digest_skips_hashing_and_follows_changes(tool_env, tmp_path):
    s = start_wharf(tmp_path / "data")
    try:
        cache = tmp_path / "cache"
        env = {**tool_env, "WHARF_CACHE_DIR": str(cache)}
        data = os.urandom(12 * MiB)
        f = tmp_path / "big.bin"
        f.write_bytes(data)

        # Written a moment ago: hashed, and not remembered yet (a write in the same clock
        # tick as the read could go unnoticed).
        out = push_in(env, tmp_path, f"{s.host}/a/fresh:v1")
        assert layer(out)["digest"] == sha256(data)
        assert not (cache / "file-digests").exists() or \
            list((cache / "file-digests").iterdir()) == []

        small = tmp_path / "small.bin"
        small.write_bytes(os.urandom(100_000))
        settled(f)
        settled(small)
        blob_push(env, tmp_path, f"{s.host}/a/first")
        # A small file is hashed in moments: it is not remembered.
        p = subprocess.run([str(WHARF), "push", f"{s.host}/a/small:v1", "small.bin"],
                           capture_output=True, env=env, timeout=60, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        (entry,) = (cache / "file-digests").iterdir()
        assert entry.read_text().split()[-1] == sha256(data)

        # Remembered: the registry is asked for the blob before any upload starts. Without
        # the digest the upload starts first (POST before HEAD).
        out = blob_push(env, tmp_path, f"{s.host}/a/second")
        assert out == {"digest": sha256(data), "size": len(data), "transfer": "uploaded"}
        text = s.wait_log('method=PUT route="upload" repository="a/second" status=201')
        seen = requests_for(text, "a/second")
        assert seen[:2] == ["HEAD", "POST"] and "PATCH" in seen, seen
        cold = requests_for(text, "a/first")
        assert cold.index("POST") < cold.index("HEAD"), cold

        # The same size, the modification time put back: the change time still moves, so
        # the new content is hashed, not taken from the cache.
        mtime = os.stat(f).st_mtime_ns
        new = os.urandom(12 * MiB)
        f.write_bytes(new)
        os.utime(f, ns=(mtime, mtime))
        out = push_in(env, tmp_path, f"{s.host}/a/changed:v1")
        assert layer(out)["digest"] == sha256(new)
        got = s("GET", f"/v2/a/changed/blobs/{sha256(new)}")
        assert got.status_code == 200 and got.content == new

        # Turned off, nothing is read or written there.
        off = {**env, "WHARF_NO_CACHE": "1"}
        settled(f)
        before = {p.name: p.read_text() for p in (cache / "file-digests").iterdir()}
        push_in(off, tmp_path, f"{s.host}/a/off:v1")
        after = {p.name: p.read_text() for p in (cache / "file-digests").iterdir()}
        assert after == before
    finally:
        s.stop()


def test_a_file_that_grows_while_it_is_pushed_is_refused(tool_env, tmp_path):
    """A file still being written (a log, a download) is not pushed half-way: the size read
    at the start and the bytes hashed disagree, and the push says so."""
    s = start_wharf(tmp_path / "data")
    stop = threading.Event()
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(64 * MiB))

    def grow():
        with open(f, "ab") as out:
            while not stop.is_set():
                out.write(os.urandom(256 * 1024))
                out.flush()
                time.sleep(0.002)

    t = threading.Thread(target=grow)
    t.start()
    try:
        p = subprocess.run([str(WHARF), "push", f"{s.host}/a/growing:v1", "big.bin"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path,
                           env={**tool_env, "WHARF_NO_CACHE": "1"})
    finally:
        stop.set()
        t.join()
    try:
        assert p.returncode == 1, p.stdout
        assert p.stderr.splitlines()[-1] == \
            "wharf: error: big.bin: the file changed while it was being pushed", p.stderr
        assert s("GET", "/v2/a/growing/manifests/v1").status_code == 404
        # nothing half-written is left behind
        assert list((s.data_dir / "uploads").iterdir()) == []
    finally:
        s.stop()
