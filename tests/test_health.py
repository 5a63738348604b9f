"""What operators see: `/healthz` and `/readyz` (open to probes even with access control
on; readiness follows the stores), a request id in every response (the client's own when
it sent a sane one) and on every log line of that request, one access-log line per request
(method, route, repository, status, bytes, duration, user), and JSON logs."""

import json
import re
import shutil
import time

import requests

from conftest import WHARF, start_wharf
from test_auth import users_config


def test_probes_are_open_and_follow_the_stores(tmp_path):
    cfg = users_config(tmp_path / "wharf.toml", {"alice": "alice-pw"},
                       [(["**"], ["alice"], ["pull", "push"])])
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        assert requests.get(f"{s.url}/v2/").status_code == 401
        r = requests.get(f"{s.url}/healthz")
        assert r.status_code == 200 and r.json() == {"status": "up"}
        r = requests.get(f"{s.url}/readyz")
        assert r.status_code == 200 and r.json() == {
            "status": "ready", "metadata": "ok", "blobs": "ok"}
        # the blob store stops answering: not ready, and the reason stays in the log
        blobs = tmp_path / "data" / "blobs"
        shutil.move(blobs, tmp_path / "blobs.away")
        blobs.write_text("not a directory")
        r = requests.get(f"{s.url}/readyz")
        assert r.status_code == 503 and r.json() == {
            "status": "not ready", "metadata": "ok", "blobs": "failing"}
        assert "Not a directory" not in r.text
        assert re.search(r"not ready: .*Not a directory", s.log_path.read_text())
        blobs.unlink()
        shutil.move(tmp_path / "blobs.away", blobs)
        assert requests.get(f"{s.url}/healthz").status_code == 200
        assert requests.get(f"{s.url}/readyz").status_code == 200
    finally:
        s.stop()


def test_request_ids_and_the_access_log(tmp_path, tool_env):
    import subprocess
    cfg = users_config(tmp_path / "wharf.toml", {"alice": "alice-pw"},
                       [(["**"], ["alice"], ["pull", "push"])])
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        ids = {requests.get(f"{s.url}/healthz").headers["x-request-id"] for _ in range(3)}
        assert len(ids) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
        r = requests.get(f"{s.url}/v2/team/app/manifests/v1", auth=("alice", "alice-pw"),
                         headers={"X-Request-Id": "trace-42"})
        assert r.status_code in (401, 404) and r.headers["x-request-id"] == "trace-42"
        r = requests.get(f"{s.url}/healthz", headers={"X-Request-Id": "bad id;"})
        assert r.headers["x-request-id"] != "bad id;"
        (tmp_path / "f.txt").write_text("hello")
        env = dict(tool_env, WHARF_USERNAME="alice", WHARF_PASSWORD="alice-pw")
        subprocess.run([str(WHARF), "push", f"{s.host}/team/app:v1", "f.txt"], cwd=tmp_path,
                       env=env, check=True, capture_output=True)
        log = s.wait_log('method=PUT route="manifest" repository="team/app" status=201')
        # each line of a request carries its id
        assert re.search(r'request\{id=trace-42\}.*wharf::access: access method=GET '
                         r'route="manifest" repository="team/app" status=', log), log
        put = [l for l in log.splitlines()
               if "method=PUT" in l and 'route="manifest"' in l]
        assert len(put) == 1, log
        assert 'repository="team/app" status=201' in put[0] and 'user="alice"' in put[0]
        assert re.search(r"bytes_in=[1-9]\d* bytes_out=0 micros=\d+", put[0]), put[0]
        assert "?" not in put[0], "query strings are never logged"
    finally:
        s.stop()


def test_json_logs(tmp_path):
    s = start_wharf(tmp_path / "data", "--log-format", "json")
    try:
        r = requests.put(f"{s.url}/v2/a/manifests/v1", data=b"{}",
                         headers={"content-type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 400
        # lines reach the file from a writer thread of their own: a moment after the answer
        deadline = time.time() + 10
        while True:
            lines = [json.loads(l) for l in s.log_path.read_text().splitlines() if l.strip()]
            access = [l for l in lines if l["target"] == "wharf::access"
                      and l["fields"]["method"] == "PUT"]
            if access or time.time() > deadline:
                break
            time.sleep(0.05)
        assert len(access) == 1
        f = access[0]["fields"]
        assert (f["route"], f["repository"], f["status"], f["bytes_in"], f["user"]) == (
            "manifest", "a", 400, 2, "-")
        assert access[0]["span"]["id"] == r.headers["x-request-id"]
    finally:
        s.stop()
    # the access log can be turned off; the other lines stay
    s = start_wharf(tmp_path / "data", "--access-log", "false")
    try:
        requests.get(f"{s.url}/v2/")
        assert "wharf::access" not in s.log_path.read_text()
    finally:
        s.stop()
    cfg = tmp_path / "bad.toml"
    cfg.write_text('log_format = "yaml"\n')
    import subprocess
    p = subprocess.run([str(WHARF), "serve", "--config", str(cfg), "--data-dir",
                        str(tmp_path / "d2")], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and 'log_format "yaml" is neither text nor json' in p.stderr
