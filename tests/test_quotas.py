"""Quotas: `[[quotas]]` bound the bytes a namespace (a repository and everything under it)
holds. A push that would pass its quota is refused with 403 DENIED before its bytes are
read when its size is known (Content-Length), and at commit otherwise, leaving nothing
behind (no blob, no session, no bytes on disk); content already in the namespace costs
nothing more; nested quotas each hold. Usage is visible through `wharf admin usage` and
the metrics. On the embedded default and on PostgreSQL, with skopeo as a real client."""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import (OCI_MANIFEST, assert_config_refused, error_code, fresh_postgres_database,
                      run_wharf, s3_env, sha256, start_wharf)
from oci_layout import write_layout

LIMIT = 100_000
RULES = f"""
[[quotas]]
namespace = "team-a"
limit_bytes = {LIMIT}

[[quotas]]
namespace = "team-a/small"
limit_bytes = 30000

[metrics]
usage_refresh_secs = 0
"""


def monolithic(s, repo, data, chunked=False):
    """A monolithic POST; `chunked` sends the body without a Content-Length."""
    body = iter([data[i:i + 8192] for i in range(0, len(data), 8192)]) if chunked else data
    return s("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, data=body)


def refused(r, says):
    assert r.status_code == 403 and error_code(r) == "DENIED", (r.status_code, r.text)
    assert says in r.json()["errors"][0]["message"], r.text


def blob_file(s, digest):
    alg, hex_ = digest.split(":")
    return s.data_dir / "blobs" / alg / hex_[:2] / hex_


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_quotas_refuse_what_would_pass_them(backend, tmp_path, tool_env):
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(RULES)
    db = ["--metadata-url", fresh_postgres_database()] if backend == "postgres" else []
    s = start_wharf(tmp_path / "data", *db, config=cfg)
    try:
        first = os.urandom(60_000)
        assert monolithic(s, "team-a/app", first).status_code == 201
        config = s.push_blob("team-a/app", b"{}")
        # known size: refused before a byte of the body is read. The request announces
        # 60,000 bytes and waits for 100 Continue before sending them; the refusal comes
        # instead.
        second = os.urandom(60_000)
        host, port = s.host.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as c:
            c.sendall((f"POST /v2/team-a/app/blobs/uploads/?digest={sha256(second)} HTTP/1.1\r\n"
                       f"Host: {s.host}\r\nContent-Length: 60000\r\nExpect: 100-continue\r\n\r\n"
                       ).encode())
            head = c.recv(65536).decode(errors="replace")
        assert head.startswith("HTTP/1.1 403"), head
        assert ("quota exceeded: team-a holds 58.6 KiB of its 97.7 KiB quota and this push "
                "adds 58.6 KiB") in head, head
        # sent anyway, the bytes are discarded unread
        r = monolithic(s, "team-a/app", second)
        refused(r, "quota exceeded: team-a holds 58.6 KiB")
        # unknown size: refused at commit, the bytes gone with it
        refused(monolithic(s, "team-a/app", second, chunked=True), "quota exceeded: team-a")
        assert s("HEAD", f"/v2/team-a/app/blobs/{sha256(second)}").status_code == 404
        if backend == "sqlite":
            assert not blob_file(s, sha256(second)).exists()
        # a chunked session: chunks without a length stream in, the commit is refused and
        # the session is gone
        r = s("POST", "/v2/team-a/app/blobs/uploads/")
        loc = r.headers["Location"]
        r = s("PATCH", loc, data=iter([second[:30_000], second[30_000:]]))
        assert r.status_code == 202, r.text
        refused(s("PUT", loc, params={"digest": sha256(second)}), "quota exceeded: team-a")
        assert error_code(s("GET", loc)) == "BLOB_UPLOAD_UNKNOWN"
        assert s("HEAD", f"/v2/team-a/app/blobs/{sha256(second)}").status_code == 404
        if backend == "sqlite":
            assert list((s.data_dir / "uploads").iterdir()) == []
        # a chunk with a length that would pass the quota ends the session at once
        r = s("POST", "/v2/team-a/app/blobs/uploads/")
        loc = r.headers["Location"]
        refused(s("PATCH", loc, data=second), "quota exceeded: team-a")
        assert error_code(s("GET", loc)) == "BLOB_UPLOAD_UNKNOWN"
        # content already in the namespace costs nothing, in any of its repositories
        assert monolithic(s, "team-a/app", first).status_code == 201
        assert monolithic(s, "team-a/other", first).status_code == 201
        # nested quotas each hold: team-a has room for 39,998 bytes, team-a/small does not
        third = os.urandom(39_998)
        refused(monolithic(s, "team-a/small/x", third),
                "quota exceeded: team-a/small holds 0 B of its 29.3 KiB quota")
        assert monolithic(s, "team-a/big", third).status_code == 201
        # manifests count too: the namespace is full to the byte
        assert monolithic(s, "team-b/app", os.urandom(200_000)).status_code == 201
        m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": config, "size": 2},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                    "digest": sha256(first), "size": len(first)}]}).encode()
        refused(s("PUT", "/v2/team-a/app/manifests/v1", data=m,
                  headers={"Content-Type": OCI_MANIFEST}), "quota exceeded: team-a")

        # what each namespace holds: the CLI and the metrics agree
        used = LIMIT
        args = ["admin", "usage", "--config", cfg, "--data-dir", tmp_path / "data", *db]
        out = run_wharf(tool_env, *args).stdout
        assert re.search(r"^team-a\s+97\.7 KiB\s+97\.7 KiB\s+100%$", out, re.M), out
        assert re.search(r"^team-a/small\s+0 B\s+29\.3 KiB\s+0%$", out, re.M), out
        doc = json.loads(run_wharf(tool_env, *args, "--format", "json").stdout)
        assert {q["namespace"]: (q["usedBytes"], q["limitBytes"]) for q in doc["quotas"]} == {
            "team-a": (used, LIMIT), "team-a/small": (0, 30000)}
        assert doc["storageUsedBytes"] == used + 200_000
        text = requests.get(f"{s.url}/metrics").text
        assert f'wharf_quota_used_bytes{{namespace="team-a"}} {used}' in text, text
        assert f'wharf_quota_limit_bytes{{namespace="team-a"}} {LIMIT}' in text
    finally:
        s.stop()


def test_replicas_keep_a_quota_together(tmp_path, tool_env):
    """Pushes racing on two replicas (PostgreSQL + S3), each checked at commit: exactly as
    many fit as the quota allows, never one more."""
    cfg = tmp_path / "wharf.toml"
    cfg.write_text('[[quotas]]\nnamespace = "shared"\nlimit_bytes = 100000\n')
    url = fresh_postgres_database()
    servers = [start_wharf(tmp_path / f"r{i}", "--metadata-url", url, config=cfg,
                           env=s3_env()) for i in range(2)]
    blobs = [os.urandom(10_000) for _ in range(24)]
    statuses = []
    lock = threading.Lock()

    def pusher(k):
        for i in range(k, len(blobs), 6):
            r = monolithic(servers[i % 2], f"shared/app{k}", blobs[i], chunked=True)
            with lock:
                statuses.append((r.status_code, error_code(r) if r.status_code != 201 else None))

    try:
        threads = [threading.Thread(target=pusher, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(statuses) == [(201, None)] * 10 + [(403, "DENIED")] * 14, statuses
        doc = json.loads(run_wharf(tool_env, "admin", "usage", "--config", cfg,
                                   "--metadata-url", url, "--format", "json").stdout)
        assert doc["quotas"] == [{"namespace": "shared", "usedBytes": 100_000,
                                  "limitBytes": 100_000}]
    finally:
        for s in servers:
            s.stop()


def test_freed_space_counts_again(tmp_path):
    """Pushes read a running tally that deletions do not lower; a push the tally says does
    not fit makes the registry sum the namespace again, so freed space is found."""
    cfg = tmp_path / "wharf.toml"
    cfg.write_text('[[quotas]]\nnamespace = "ns"\nlimit_bytes = 100000\n')
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        first = os.urandom(60_000)
        assert monolithic(s, "ns/app", first).status_code == 201
        assert s("DELETE", f"/v2/ns/app/blobs/{sha256(first)}").status_code == 202
        assert monolithic(s, "ns/app", os.urandom(60_000)).status_code == 201
        refused(monolithic(s, "ns/app", os.urandom(60_000)),
                "quota exceeded: ns holds 58.6 KiB of its 97.7 KiB quota")
    finally:
        s.stop()


def test_a_held_namespace_lock_times_out_cleanly(tmp_path):
    """Another replica holding the namespace's lock (here: a session holding it) for longer
    than a commit waits (30 s) gets 429 TOOMANYREQUESTS, and nothing is linked."""
    cfg = tmp_path / "wharf.toml"
    cfg.write_text('[[quotas]]\nnamespace = "held"\nlimit_bytes = 100000\n')
    url = fresh_postgres_database()
    s = start_wharf(tmp_path / "data", "--metadata-url", url, config=cfg)
    key = int(hashlib.sha256(b"wharf quota held").hexdigest()[:15], 16)
    holder = subprocess.Popen(["psql", url, "-qAt"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        holder.stdin.write(f"SELECT pg_advisory_lock({key});\nSELECT 'held';\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() in ("", "held")
        data = os.urandom(1000)
        started = time.time()
        r = monolithic(s, "held/app", data)
        assert r.status_code == 429 and error_code(r) == "TOOMANYREQUESTS", r.text
        assert "pushes to held kept its quota lock busy" in r.text
        assert 29 <= time.time() - started < 60
        assert s("HEAD", f"/v2/held/app/blobs/{sha256(data)}").status_code == 404
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    try:
        assert monolithic(s, "held/app", data).status_code == 201
    finally:
        s.stop()


def test_skopeo_sees_the_refusal(tmp_path):
    exe = shutil.which("skopeo")
    if not exe:
        pytest.fail("skopeo is not installed: run tests/setup")
    src = tmp_path / "src"
    write_layout(src, "v1", layers=3, seed="quota")
    size = sum(p.stat().st_size for p in (src / "blobs" / "sha256").iterdir())
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(f'[[quotas]]\nnamespace = "tiny"\nlimit_bytes = {size // 2}\n')
    s = start_wharf(tmp_path / "data", config=cfg)
    policy = tmp_path / "policy.json"
    policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
    try:
        copy = [exe, "--policy", policy, "copy", "--dest-tls-verify=false", f"oci:{src}:v1"]
        r = subprocess.run([*map(str, copy), f"docker://{s.host}/tiny/app:v1"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode != 0, r.stdout
        assert "quota exceeded: tiny holds" in r.stderr, r.stderr
        assert s("HEAD", "/v2/tiny/app/manifests/v1").status_code == 404
        # the same image fits elsewhere
        r = subprocess.run([*map(str, copy), f"docker://{s.host}/roomy/app:v1"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    finally:
        s.stop()


def test_bad_quotas_are_refused(tmp_path):
    assert_config_refused(tmp_path, [
        ('[[quotas]]\nnamespace = "Team"\nlimit_bytes = 1\n', '[[quotas]]: namespace "Team"'),
        ('[[quotas]]\nnamespace = "a"\nlimit_bytes = 1\n[[quotas]]\nnamespace = "a"\n'
         'limit_bytes = 2\n', '[[quotas]]: namespace "a" has two quotas'),
        ('[[quotas]]\nnamespace = "a"\n', "missing field `limit_bytes`"),
        ('[[quotas]]\nnamespace = "a"\nlimit_bytes = "10GB"\n', "invalid type: string"),
    ])
