"""Scale-out benchmark: the embedded default (SQLite + filesystem) beside PostgreSQL + S3
(a one-node Garage) with 1 and 3 replicas, all measured in one run under the same client
load. Writes the scale-out section of bench/RESULTS.md.

Run it with `bench/run --scaleout` (which installs PostgreSQL and Garage through tests/setup).
The client load is fixed: the same number of streams and connections whichever the
configuration, spread round-robin over the replicas, so the columns compare like with like."""

import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (HERE, MiB, cpu_seconds, curl, file_digest, make_file, parse_wrk,
                    push_monolithic, push_small_image, quiesce, update_json, update_section)
from conftest import ROOT, start_wharf

STREAMS = 3  # concurrent blob pushes and pulls
PUT_CONNECTIONS = 9
GET_CONNECTIONS = 18


def start_backends(work):
    """A fresh PostgreSQL cluster and Garage node under `work`; returns (env, stop)."""
    pg_dir, s3_dir = work / "pg", work / "garage"
    pg_url = subprocess.run([str(ROOT / "tests/postgres"), "start", str(pg_dir)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        out = subprocess.run([str(ROOT / "tests/garage"), "start", str(s3_dir)], check=True,
                             capture_output=True, text=True).stdout
    except subprocess.CalledProcessError:
        subprocess.run([str(ROOT / "tests/postgres"), "stop", str(pg_dir)])
        raise
    s3 = dict(line.split("=", 1) for line in out.split())
    env = {
        "WHARF_METADATA_URL": pg_url,
        "WHARF_S3_BUCKET": s3["WHARF_TEST_S3_BUCKET"],
        "WHARF_S3_ENDPOINT": s3["WHARF_TEST_S3_ENDPOINT"],
        "WHARF_S3_REGION": "garage",
        "AWS_ACCESS_KEY_ID": s3["WHARF_TEST_S3_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": s3["WHARF_TEST_S3_SECRET"],
    }

    def stop():
        subprocess.run([str(ROOT / "tests/garage"), "stop", str(s3_dir)])
        subprocess.run([str(ROOT / "tests/postgres"), "stop", str(pg_dir)])
    return env, stop


def wharf_cpu(servers):
    return sum(cpu_seconds(s.proc.pid) for s in servers)


def parallel(jobs):
    """Runs the (fn, args) jobs at once; returns elapsed seconds."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as ex:
        for f in [ex.submit(fn, *args) for fn, args in jobs]:
            f.result()
    return time.perf_counter() - t0


def wrk_spread(servers, connections, seconds, script, path="", env=None):
    """One wrk per replica, connections split evenly; summed ops/s, worst p99."""
    quiesce()
    c0 = wharf_cpu(servers)
    procs = []
    for i, s in enumerate(servers):
        conns = connections // len(servers) + (i < connections % len(servers))
        procs.append(subprocess.Popen(
            # Two load threads for one server, one per replica for three: more would only
            # fight the servers for the same 2 cores and inflate the tail with their stalls.
            ["wrk", "-t", str(max(1, min(conns, 2 // len(servers)))), "-c", str(conns),
             "-d", f"{seconds}s",
             "--latency", "-s", str(HERE / script), s.url + path],
            stdout=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {}), "TAG_PREFIX": f"r{i}-"}))
    rps = total = p99 = 0
    for p in procs:
        out, _ = p.communicate()
        r, n, q, errors = parse_wrk(out)
        if p.returncode or errors:
            raise RuntimeError(f"wrk failed ({errors} bad responses):\n{out}")
        rps, total, p99 = rps + r, total + n, max(p99, q)
    cpu = wharf_cpu(servers) - c0
    return {"ops_s": rps, "p99_ms": p99, "cpu_ms_per_op": cpu * 1000 / total}


def measure(servers, work, blobs, quick):
    """The fixed load against `servers` (one or more replicas of one registry)."""
    def at(i):
        return servers[i % len(servers)].url
    r = {}
    size = sum(b.stat().st_size for b, _ in blobs)
    quiesce()
    c0 = wharf_cpu(servers)
    t = parallel([(push_monolithic, (at(i), "bench/blobs", b, d))
                  for i, (b, d) in enumerate(blobs)])
    r["push_mb_s"] = size / t / MiB
    r["push_cpu_s_per_gib"] = (wharf_cpu(servers) - c0) / (size / (1 << 30))
    # Pull every blob through a replica other than the one that took it.
    quiesce()
    c0 = wharf_cpu(servers)
    t = parallel([(curl, ("-o", "/dev/null", f"{at(i + 1)}/v2/bench/blobs/blobs/{d}"))
                  for i, (_, d) in enumerate(blobs)])
    r["pull_mb_s"] = size / t / MiB
    r["pull_cpu_s_per_gib"] = (wharf_cpu(servers) - c0) / (size / (1 << 30))

    secs = 3 if quick else 10
    manifest, _ = push_small_image(at(0), "bench/small", "v1")
    push_small_image(at(0), "bench/put", "seed")
    mf = work / "manifest.json"
    mf.write_bytes(manifest)
    r["manifest_put"] = wrk_spread(servers, PUT_CONNECTIONS, secs, "put_manifest.lua",
                                   env={"MANIFEST_FILE": str(mf)})
    r["manifest_get"] = wrk_spread(servers, GET_CONNECTIONS, secs, "get.lua",
                                   path="/v2/bench/small/manifests/v1")
    return r


def run_configuration(name, work, blobs, quick):
    home = work / name
    home.mkdir()
    stop_backends = None
    servers = []
    try:
        if name == "embedded":
            servers = [start_wharf(home / "data", env={"WHARF_LOG": "warn,wharf=info"})]
        else:
            env, stop_backends = start_backends(home)
            env["WHARF_LOG"] = "warn,wharf=info"
            replicas = 3 if name == "scaleout-3" else 1
            servers = [start_wharf(home / f"r{i}", env=env) for i in range(replicas)]
        print(f"measuring {name}: {', '.join(s.url for s in servers)}", file=sys.stderr)
        return measure(servers, home, blobs, quick)
    finally:
        for s in servers:
            s.stop()
        if stop_backends:
            stop_backends()


def report(results, quick, elapsed, blob_size):
    e, one, three = results["embedded"], results["scaleout-1"], results["scaleout-3"]
    rows = [
        (f"push {STREAMS} x {blob_size // MiB} MiB at once (MiB/s total)", "push_mb_s", None),
        (f"pull {STREAMS} x {blob_size // MiB} MiB at once (MiB/s total)", "pull_mb_s", None),
        ("Wharf CPU per GiB pushed (s)", "push_cpu_s_per_gib", None),
        ("Wharf CPU per GiB pulled (s)", "pull_cpu_s_per_gib", None),
        (f"manifest PUT, {PUT_CONNECTIONS} clients (ops/s)", "manifest_put", "ops_s"),
        ("manifest PUT p99 (ms)", "manifest_put", "p99_ms"),
        ("manifest PUT Wharf CPU per op (ms)", "manifest_put", "cpu_ms_per_op"),
        (f"manifest GET, {GET_CONNECTIONS} clients (ops/s)", "manifest_get", "ops_s"),
        ("manifest GET p99 (ms)", "manifest_get", "p99_ms"),
        ("manifest GET Wharf CPU per op (ms)", "manifest_get", "cpu_ms_per_op"),
    ]

    def fmt(x):
        return f"{x:,.3f}" if x < 10 else f"{x:,.0f}"
    lines = [
        "## Scale-out: PostgreSQL + S3, 1 and 3 replicas",
        "",
        f"Reproduce: `bench/run --scaleout{' --quick' if quick else ''}` (took {elapsed:.0f} s).",
        "Three configurations of Wharf under the same client load, in one run: the embedded "
        "default (SQLite + filesystem), and PostgreSQL 15 + Garage (one S3 node) behind 1 and "
        "behind 3 replicas. Every configuration starts from empty storage. Blob pushes and "
        f"pulls are {STREAMS} concurrent curl streams; with 3 replicas each stream goes to a "
        "different replica, and each blob is pulled through a replica other than the one "
        "that received it. Small requests are wrk with the connections split evenly over "
        "the replicas, 2 load threads for one server and 1 per replica for three (ops/s "
        "summed, p99 the worst replica's).",
        "",
        "Everything shares this machine's 2 cores: the replicas, PostgreSQL (durable "
        "commits, as configured by default), Garage and the load generators. Three replicas "
        "here therefore show what sharing costs, not added capacity; on separate machines "
        "the replicas' CPU adds up. CPU columns count the Wharf processes only.",
        "",
        "| measure | embedded | PostgreSQL + S3, 1 replica | PostgreSQL + S3, 3 replicas |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, key, sub in rows:
        vals = [(r[key][sub] if sub else r[key]) for r in (e, one, three)]
        lines.append(f"| {label} | " + " | ".join(fmt(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def main(quick, out):
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="wharf-bench-scaleout-",
                                 dir=os.environ.get("BENCH_DIR")))
    # PostgreSQL runs as its own user when we are root, and must reach its directory.
    os.chmod(work, 0o711)
    try:
        blob_size = (32 if quick else 256) * MiB
        blobs = []
        for i in range(STREAMS):
            path = work / f"blob{i}.bin"
            make_file(path, blob_size, seed=i)
            blobs.append((path, file_digest(path)))
        results = {name: run_configuration(name, work, blobs, quick)
                   for name in ("embedded", "scaleout-1", "scaleout-3")}
        text = report(results, quick, time.time() - started, blob_size)
        update_section(Path(out), "scaleout", text)
        update_json(Path(out).with_suffix(".json"), "scaleout", results)
        print(text)
    finally:
        subprocess.run(["rm", "-rf", str(work)])


