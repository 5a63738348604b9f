"""Side-by-side benchmark: Wharf and CNCF Distribution 2.8 started here, measured in one run,
reported as ratios in bench/RESULTS.md. Large transfers go through curl, small requests
through wrk, so the load generator is not the thing measured. Server CPU comes from
/proc/<pid>/stat and peak memory from VmHWM. The other modes (--scaleout, --client,
--auth) live in their own modules; helpers all of them use are in common.py.

Run it with bench/run (which builds Wharf and installs wrk and docker-registry)."""

import argparse
import concurrent.futures
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from common import (HERE, OCI_MANIFEST, MiB, curl, file_digest, make_file, oha, peak_rss_mib,
                    push_chunked, push_monolithic, push_small_image, ratio, start_distribution,
                    start_wharf, timed, update_section, wrk)


def tag_many(url, repo, manifest, count):
    def put(i):
        with requests.Session() as s:
            r = s.put(f"{url}/v2/{repo}/manifests/t{i:05d}", data=manifest,
                      headers={"Content-Type": OCI_MANIFEST})
            assert r.status_code == 201, r.text
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(put, range(count)))


def list_pages(url, repo, page):
    """Follows Link headers from ?n=page; returns (pages, tags, ms per page)."""
    http = requests.Session()
    next_url, pages, tags = f"{url}/v2/{repo}/tags/list?n={page}", 0, 0
    t0 = time.perf_counter()
    while next_url:
        r = http.get(next_url)
        r.raise_for_status()
        pages += 1
        tags += len(r.json()["tags"] or [])
        link = r.headers.get("Link")
        next_url = url + re.match(r"<([^>]+)>", link).group(1) if link else None
    return pages, tags, (time.perf_counter() - t0) * 1000 / pages


def concurrent_pulls(url, repo, digest, clients, size):
    procs = []
    t0 = time.perf_counter()
    for _ in range(clients):
        procs.append(subprocess.Popen(["curl", "-sS", "--fail", "-o", "/dev/null",
                                       f"{url}/v2/{repo}/blobs/{digest}"]))
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("a concurrent pull failed")
    elapsed = time.perf_counter() - t0
    return clients * size / elapsed / MiB


def measure(server, work, blob, blob_digest, chunks, pull_blob, pull_digest, quick):
    url = server.url
    r = {}
    secs = 3 if quick else 10
    size = blob.stat().st_size

    runs = 1 if quick else 3

    def median_of(fn, *args):
        """Median wall and CPU seconds over `runs` runs: one run on a shared VM is noise."""
        samples = sorted(timed(server, fn, *args) for _ in range(runs))
        return samples[len(samples) // 2]

    t, cpu = median_of(push_monolithic, url, "bench/mono", blob, blob_digest)
    r["push_mono_mb_s"] = size / t / MiB
    r["push_mono_cpu_s_per_gib"] = cpu / (size / (1 << 30))
    t, cpu = median_of(push_chunked, url, "bench/chunked", chunks, blob_digest)
    r["push_chunked_mb_s"] = size / t / MiB
    t, cpu = median_of(curl, "-o", "/dev/null", f"{url}/v2/bench/mono/blobs/{blob_digest}")
    r["pull_mb_s"] = size / t / MiB
    r["pull_cpu_s_per_gib"] = cpu / (size / (1 << 30))

    manifest, layer = push_small_image(url, "bench/small", "v1")
    push_small_image(url, "bench/put", "seed")  # the PUT target needs the blobs too
    mf = work / "manifest.json"
    mf.write_bytes(manifest)
    r["manifest_put"] = wrk(server, url, 8, secs, "put_manifest.lua", {"MANIFEST_FILE": str(mf)})
    r["manifest_get"] = wrk(server, f"{url}/v2/bench/small/manifests/v1", 16, secs, "get.lua")
    if os.environ.get("BENCH_SKIP_HEAD"):
        r["blob_head"] = {"ops_s": 0, "p99_ms": 0, "cpu_ms_per_op": 0}
    else:
        r["blob_head"] = oha(server, f"{url}/v2/bench/small/blobs/{layer}", 16, secs, "HEAD")

    ntags = 2000 if quick else 10_000
    tag_many(url, "bench/tags", manifest_for(url, "bench/tags"), ntags)
    pages, listed, ms = list_pages(url, "bench/tags", 1000)
    r["tags"] = {"pages": pages, "listed": listed, "ms_per_page": ms}

    psize = pull_blob.stat().st_size
    push_monolithic(url, "bench/pull", pull_blob, pull_digest)
    clients = 10 if quick else 50
    r["concurrent_pull_mb_s"] = concurrent_pulls(url, "bench/pull", pull_digest, clients, psize)
    r["concurrent_clients"] = clients
    r["peak_rss_mib"] = peak_rss_mib(server.proc.pid)
    return r


def manifest_for(url, repo):
    m, _ = push_small_image(url, repo, "seed")
    return m


def report(w, d, args, elapsed, blob_size, pull_size):
    rows = [
        (f"push {blob_size // MiB} MiB, one PUT (MiB/s)", w["push_mono_mb_s"],
         d["push_mono_mb_s"], True),
        (f"push {blob_size // MiB} MiB, 16 MiB PATCH chunks (MiB/s)", w["push_chunked_mb_s"],
         d["push_chunked_mb_s"], True),
        (f"pull {blob_size // MiB} MiB (MiB/s)", w["pull_mb_s"], d["pull_mb_s"], True),
        ("server CPU per GiB pushed (s)", w["push_mono_cpu_s_per_gib"],
         d["push_mono_cpu_s_per_gib"], False),
        ("server CPU per GiB pulled (s)", w["pull_cpu_s_per_gib"], d["pull_cpu_s_per_gib"],
         False),
    ]
    for key, label, conns in (("manifest_put", "manifest PUT", 8),
                              ("manifest_get", "manifest GET", 16),
                              ("blob_head", "blob HEAD", 16)):
        rows += [
            (f"{label}, {conns} clients (ops/s)", w[key]["ops_s"], d[key]["ops_s"], True),
            (f"{label} p99 (ms)", w[key]["p99_ms"], d[key]["p99_ms"], False),
            (f"{label} server CPU per op (ms)", w[key]["cpu_ms_per_op"],
             d[key]["cpu_ms_per_op"], False),
        ]
    rows += [
        (f"list {w['tags']['listed']} tags, ms per request (n=1000; pages: wharf "
         f"{w['tags']['pages']}, distribution {d['tags']['pages']})",
         w["tags"]["ms_per_page"], d["tags"]["ms_per_page"], False),
        (f"{w['concurrent_clients']} concurrent pulls of {pull_size // MiB} MiB (MiB/s total)",
         w["concurrent_pull_mb_s"], d["concurrent_pull_mb_s"], True),
        ("peak RSS (MiB)", w["peak_rss_mib"], d["peak_rss_mib"], False),
    ]
    lines = [
        "# Benchmark: Wharf vs CNCF Distribution 2.8.2",
        "",
        f"Reproduce: `bench/run{' --quick' if args.quick else ''}` "
        f"(took {elapsed:.0f} s). Machine: {os.cpu_count()} cores, "
        f"{platform.machine()}, {platform.system()} {platform.release()}; both servers on "
        "loopback with their data on the same disk, measured one after the other in one run.",
        "Ratio: how many times better Wharf is (higher throughput, or lower time/CPU/memory).",
        "Wharf fsyncs every blob and manifest before acknowledging it; Distribution's "
        "filesystem driver does not fsync at all. Before each small-request phase both "
        "servers get the same `sync` and 2 s pause, so gigabytes of blob writes from the "
        "phase before do not land in its latency.",
        "",
        "| measure | Wharf | Distribution 2.8.2 | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, a, b, hib in rows:
        lines.append(f"| {label} | {a:,.3f} | {b:,.3f} | {ratio(a, b, hib)} |"
                     if a < 10 or b < 10 else f"| {label} | {a:,.0f} | {b:,.0f} | "
                     f"{ratio(a, b, hib)} |")
    lines += ["", "Blob transfers: median of 3 runs each (1 with --quick). "
              "Load generators: curl for blob transfers (one at a time; 16 MiB chunks as "
              "separate PATCH requests), wrk with 2 threads for small requests "
              "(bench/get.lua, bench/put_manifest.lua: every PUT writes a new tag). "
              "The load generator shares the 2 cores with the server, so ops/s are "
              "lower bounds; CPU per op is read from the server's own /proc stat.", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, short runs (smoke test)")
    ap.add_argument("--scaleout", action="store_true",
                    help="measure PostgreSQL + S3 with 1 and 3 replicas beside the embedded "
                         "default, instead of Wharf against Distribution")
    ap.add_argument("--client", action="store_true",
                    help="measure the wharf client commands against skopeo and the oras SDK")
    ap.add_argument("--signing", action="store_true",
                    help="measure wharf sign/verify/attest against cosign, and the pull policy")
    ap.add_argument("--artifacts", action="store_true",
                    help="measure wharf chart/artifact beside helm and flux, and search")
    ap.add_argument("--auth", action="store_true",
                    help="measure access-control overhead beside Distribution with htpasswd")
    ap.add_argument("--ops", action="store_true",
                    help="measure metrics on against off, a garbage collection pass under "
                         "load, and scrub against sha256sum")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    if args.scaleout:
        import scaleout
        return scaleout.main(args.quick, args.out)
    if args.client:
        import client
        return client.main(args.quick, args.out)
    if args.signing:
        import signing
        return signing.main(args.quick, args.out)
    if args.artifacts:
        import artifacts
        return artifacts.main(args.quick, args.out)
    if args.auth:
        import auth
        return auth.main(args.quick, args.out)
    if args.ops:
        import ops
        return ops.main(args.quick, args.out)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="wharf-bench-", dir=os.environ.get("BENCH_DIR")))
    try:
        blob_size = (64 if args.quick else 1024) * MiB
        blob = work / "blob.bin"
        make_file(blob, blob_size)
        digest = file_digest(blob)
        chunk_dir = work / "chunks"
        chunk_dir.mkdir()
        subprocess.run(["split", "-b", "16M", "-d", "-a", "4", str(blob),
                        str(chunk_dir / "c")], check=True)
        chunks = sorted(chunk_dir.iterdir())
        pull_size = (16 if args.quick else 64) * MiB
        pull_blob = work / "pull.bin"
        make_file(pull_blob, pull_size)
        pull_digest = file_digest(pull_blob)

        results = {}
        for name in ("wharf", "distribution"):
            home = work / name
            home.mkdir()
            server = (start_wharf(home / "data", env={"WHARF_LOG": "warn,wharf=info"})
                      if name == "wharf" else start_distribution(home))
            try:
                print(f"measuring {name} at {server.url}", file=sys.stderr)
                results[name] = measure(server, home, blob, digest, chunks, pull_blob,
                                        pull_digest, args.quick)
            finally:
                server.stop()
            shutil.rmtree(home, ignore_errors=True)
        text = report(results["wharf"], results["distribution"], args,
                      time.time() - started, blob_size, pull_size)
        update_section(Path(args.out), "main", text)
        data_path = Path(args.out).with_suffix(".json")
        data = json.loads(data_path.read_text()) if data_path.exists() else {}
        data.update(results)
        data_path.write_text(json.dumps(data, indent=2))
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
