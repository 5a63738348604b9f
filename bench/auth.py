"""Access-control overhead: manifest GETs with no auth, basic auth and bearer tokens on Wharf,
beside Distribution 2.8 with htpasswd basic auth, in one run. Writes the auth section of
bench/RESULTS.md. Run it with `bench/run --auth`."""

import base64
import os
import subprocess
import tempfile
import time
from pathlib import Path

import bcrypt
import requests

from common import update_section, wrk_with_headers
from conftest import start_distribution, start_wharf

CONNECTIONS = 16
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
# The same bcrypt cost for both registries (start_distribution hashes with 5 rounds).
COST = 5


def measure(server, headers, seconds, script):
    return wrk_with_headers(server, f"{server.url}/v2/bench/small/manifests/v1", headers,
                            CONNECTIONS, seconds, script)


def main(quick, out):
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="wharf-bench-auth-", dir=os.environ.get("BENCH_DIR")))
    secs = 3 if quick else 10
    script = work / "headers.lua"
    basic = {"Authorization": "Basic " + base64.b64encode(b"bob:pw").decode()}
    cfg = work / "wharf.toml"
    cfg.write_text(f"""[auth]
[[auth.users]]
name = "bob"
password_hash = "{bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=COST)).decode()}"
[[auth.policies]]
repositories = ["bench/**"]
users = ["bob"]
actions = ["pull", "push"]
""")
    rows = {}
    for name in ("open", "secured"):
        s = start_wharf(work / name, config=cfg if name == "secured" else None,
                        env={"WHARF_LOG": "warn,wharf=info"})
        try:
            if name == "secured":
                s.http.auth = ("bob", "pw")
            s.push_image("bench/small", "v1")
            if name == "open":
                rows["wharf, no auth"] = measure(s, ACCEPT, secs, script)
                continue
            rows["wharf, basic auth"] = measure(s, {**ACCEPT, **basic}, secs, script)
            tok = requests.get(f"{s.url}/token", auth=("bob", "pw"), params={
                "service": "wharf", "scope": "repository:bench/small:pull"}).json()["token"]
            rows["wharf, bearer token"] = measure(
                s, {**ACCEPT, "Authorization": f"Bearer {tok}"}, secs, script)
        finally:
            s.stop()
    d = start_distribution(work, users={"bob": "pw"})
    try:
        d.http.auth = ("bob", "pw")
        d.push_image("bench/small", "v1")
        rows["distribution 2.8.2, basic auth (htpasswd)"] = measure(d, {**ACCEPT, **basic}, secs,
                                                                    script)
    finally:
        d.stop()
    lines = [
        "## Access control overhead",
        "",
        f"Reproduce: `bench/run --auth{' --quick' if quick else ''}` (took "
        f"{time.time() - started:.0f} s). Manifest GETs, wrk with 2 threads and "
        f"{CONNECTIONS} connections for {secs} s each, every request authenticated; bcrypt "
        f"cost {COST} on both registries. Wharf verifies a password or a token once and "
        "remembers it (passwords 5 minutes, tokens until they expire); Distribution runs "
        "bcrypt on every request.",
        "",
        "| configuration | ops/s | p99 (ms) | server CPU per op (ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for k, v in rows.items():
        lines.append(f"| {k} | {v['ops_s']:,.0f} | {v['p99_ms']:.2f} | {v['cpu_ms_per_op']:.3f} |")
    text = "\n".join(lines) + "\n"
    update_section(Path(out), "auth", text)
    from common import update_json
    update_json(Path(out).with_suffix(".json"), "auth", rows)
    print(text)
    subprocess.run(["rm", "-rf", str(work)])
