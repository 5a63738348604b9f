"""Operations: what metrics cost on the hottest paths (manifest GET and PUT with metrics on
and off, rounds in turns, the median round counts), a garbage collection pass over 100,000
manifests and 200,000 blobs while manifest PUTs continue (the pass's time, and PUT p99
during it against without it), and scrub's hashing rate against `sha256sum` over the same
files. Writes the ops section of bench/RESULTS.md. Run it with `bench/run --ops`.

The collection bench seeds its registry straight into SQLite and the blob directory (an
HTTP push of 300,000 objects would take longer than the rest of the run): rows and files
exactly as Wharf writes them, all two hours old, half of the manifests tagged."""

import hashlib
import os
import json
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from common import HERE, push_small_image, update_json, update_section, wrk
from conftest import WHARF, start_wharf

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def median(xs):
    return sorted(xs)[len(xs) // 2]


def metrics_cost(work, rounds, secs):
    runs = {"on": [], "off": []}
    for _ in range(rounds):
        for name in ("on", "off"):
            cfg = work / f"metrics-{name}.toml"
            cfg.write_text("" if name == "on" else "[metrics]\nenabled = false\n")
            data = work / f"data-{name}"
            s = start_wharf(data, config=cfg, env={"WHARF_LOG": "warn,wharf::serve=info"})
            try:
                manifest, _ = push_small_image(s.url, "bench/small", "v1")
                push_small_image(s.url, "bench/put", "seed")
                mf = work / "manifest.json"
                mf.write_bytes(manifest)
                get = wrk(s, f"{s.url}/v2/bench/small/manifests/v1", 16, secs, "get.lua")
                put = wrk(s, s.url, 8, secs, "put_manifest.lua", {"MANIFEST_FILE": str(mf)})
                runs[name].append({"get": get, "put": put})
            finally:
                s.stop()
            shutil.rmtree(data, ignore_errors=True)
    out = {}
    for name, rs in runs.items():
        out[name] = {op: {k: median([r[op][k] for r in rs]) for k in rs[0][op]}
                     for op in ("get", "put")}
    return out


def record_cost():
    """The cost of recording one request, from `cargo bench` (nanoseconds of one core)."""
    out = subprocess.run(["cargo", "bench", "-q", "-p", "wharf-server", "--bench", "metrics"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def seed(data, manifests, now):
    """Writes `manifests` image manifests (config and layer each, all unique) into an
    embedded registry's data directory; even ones tagged."""
    db = sqlite3.connect(data / "metadata.db")
    old = now - 7200
    blobs_dir = data / "blobs" / "sha256"
    repos = 100
    with db:
        db.executemany("INSERT OR IGNORE INTO repositories (name) VALUES (?)",
                       [(f"gc/r{k}",) for k in range(repos)])
        for start in range(0, manifests, 5000):
            blob_rows, manifest_rows, ref_rows, tag_rows = [], [], [], []
            for i in range(start, min(start + 5000, manifests)):
                repo = f"gc/r{i % repos}"
                config = json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode()
                layer = f"layer {i} ".encode() * 8
                descs = []
                for data_bytes, mt in ((config, "application/vnd.oci.image.config.v1+json"),
                                       (layer, "application/vnd.oci.image.layer.v1.tar+gzip")):
                    hex_ = hashlib.sha256(data_bytes).hexdigest()
                    d = blobs_dir / hex_[:2] / hex_
                    d.write_bytes(data_bytes)
                    os.utime(d, (old, old))
                    blob_rows.append((repo, "sha256:" + hex_, len(data_bytes), old))
                    descs.append({"mediaType": mt, "digest": "sha256:" + hex_,
                                  "size": len(data_bytes)})
                content = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                      "config": descs[0], "layers": [descs[1]]}).encode()
                digest = "sha256:" + hashlib.sha256(content).hexdigest()
                manifest_rows.append((repo, digest, OCI_MANIFEST, len(content), content, old,
                                      old, "image",
                                      len(content) + descs[0]["size"] + descs[1]["size"]))
                ref_rows += [(repo, descs[0]["digest"], digest), (repo, descs[1]["digest"], digest)]
                if i % 2 == 0:
                    tag_rows.append((repo, f"v{i}", digest, old))
            db.executemany("INSERT INTO blobs (repo, digest, size, linked_at) VALUES (?,?,?,?)",
                           blob_rows)
            db.executemany(
                "INSERT INTO manifests (repo, digest, media_type, size, content, created_at, "
                "pushed_at, kind, total_size) VALUES (?,?,?,?,?,?,?,?,?)", manifest_rows)
            db.executemany("INSERT INTO manifest_refs (repo, child, manifest) VALUES (?,?,?)",
                           ref_rows)
            db.executemany("INSERT INTO tags (repo, tag, digest, updated_at) VALUES (?,?,?,?)",
                           tag_rows)
    db.close()


def gc_under_load(work, manifests, secs, window):
    data = work / "gc-data"
    s = start_wharf(data, env={"WHARF_LOG": "warn,wharf::serve=info"})  # creates the schema
    s.stop()
    t0 = time.time()
    seed(data, manifests, int(time.time()))
    seeded = time.time() - t0
    s = start_wharf(data, env={"WHARF_LOG": "warn,wharf::serve=info"})
    try:
        manifest, _ = push_small_image(s.url, "bench/put", "seed")
        mf = work / "manifest.json"
        mf.write_bytes(manifest)
        env = {"MANIFEST_FILE": str(mf)}
        without = wrk(s, s.url, 8, secs, "put_manifest.lua", dict(env, TAG_PREFIX="a"))
        result = {}

        def collect():
            time.sleep(1)
            t = time.perf_counter()
            r = requests.post(f"{s.url}/v2/_wharf/gc", params={"grace": "1h"}, timeout=600)
            result["seconds"] = time.perf_counter() - t
            result["report"] = r.json()

        t = threading.Thread(target=collect)
        t.start()
        during = wrk(s, s.url, 8, window, "put_manifest.lua", dict(env, TAG_PREFIX="b"))
        t.join()
        rep = result["report"]
        return {
            "manifests": manifests, "blobs": manifests * 2, "seed_s": seeded,
            "gc_s": result["seconds"], "deleted_manifests": len(rep["manifests"]),
            "deleted_blobs": len(rep["blobs"]), "skipped_steps": rep["skippedSteps"],
            "reclaimed_mib": (rep["manifestBytes"] + rep["blobBytes"]) / 2**20,
            "put_without": without, "put_during": during,
            "pass_within_load": result["seconds"] < window - 1, "window_s": window,
        }
    finally:
        s.stop()


def scrub_rate(work, blobs, size_mib):
    data = work / "scrub-data"
    s = start_wharf(data, env={"WHARF_LOG": "warn,wharf::serve=info"})
    s.stop()
    db = sqlite3.connect(data / "metadata.db")
    files = []
    chunk = bytes(range(256)) * 4096  # 1 MiB
    with db:
        db.execute("INSERT INTO repositories (name) VALUES ('scrub/r')")
        for i in range(blobs):
            body = (chunk * size_mib)[:-1] + bytes([i % 256])
            hex_ = hashlib.sha256(body).hexdigest()
            p = data / "blobs" / "sha256" / hex_[:2] / hex_
            p.write_bytes(body)
            files.append(str(p))
            db.execute("INSERT INTO blobs (repo, digest, size, linked_at) VALUES (?,?,?,0)",
                       ("scrub/r", "sha256:" + hex_, len(body)))
    db.close()
    total_mib = blobs * size_mib

    def timed(cmd):
        best = None
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            e = time.perf_counter() - t
            best = e if best is None else min(best, e)
        return best

    w = timed([str(WHARF), "scrub", "--data-dir", str(data)])
    sha = timed(["sha256sum", *files])
    return {"mib": total_mib, "wharf_s": w, "sha256sum_s": sha,
            "wharf_mib_s": total_mib / w, "sha256sum_mib_s": total_mib / sha}


def main(quick, out):
    work = Path(tempfile.mkdtemp(prefix="wharf-ops-"))
    try:
        secs = 3 if quick else 5
        m = metrics_cost(work, 2 if quick else 5, secs)
        m["record_ns"] = record_cost()
        g = gc_under_load(work, 10_000 if quick else 100_000, secs * 2, 20 if quick else 75)
        sc = scrub_rate(work, 8 if quick else 32, 16 if quick else 32)
        sc["blob_mib"] = 16 if quick else 32
    finally:
        shutil.rmtree(work, ignore_errors=True)
    on, off = m["on"], m["off"]

    def cost(op, k):
        return (on[op][k] - off[op][k]) / off[op][k] * 100

    lines = [
        "## Operations: metrics, garbage collection, scrub (issue 18)",
        "",
        f"`bench/run --ops`{' --quick' if quick else ''}, on this 2-core machine. Metrics on "
        "against off, the median of rounds in turns (wrk, GET 16 connections, PUT 8):",
        "",
        "| operation | metrics off (ops/s) | on (ops/s) | CPU per op off (ms) | on (ms) "
        "| CPU cost |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for op, label in (("get", "manifest GET"), ("put", "manifest PUT (new tag)")):
        lines.append(
            f"| {label} | {off[op]['ops_s']:,.0f} | {on[op]['ops_s']:,.0f} | "
            f"{off[op]['cpu_ms_per_op']:.3f} | {on[op]['cpu_ms_per_op']:.3f} | "
            f"{cost(op, 'cpu_ms_per_op'):+.1f} % |")
    rec = m["record_ns"]
    get_share = rec["manifest_get_ns"] / (off["get"]["cpu_ms_per_op"] * 1e6) * 100
    put_share = rec["manifest_put_ns"] / (off["put"]["cpu_ms_per_op"] * 1e6) * 100
    lines += [
        "",
        "Whole-server runs on this machine vary by several per cent from round to round, "
        "more than metrics cost; the cost itself, from `cargo bench -p wharf-server --bench "
        f"metrics`: recording a manifest GET takes {rec['manifest_get_ns']:.0f} ns of one "
        f"core, **{get_share:.2f} %** of the GET's CPU above; a manifest PUT "
        f"{rec['manifest_put_ns']:.0f} ns, **{put_share:.2f} %** (target: under 3 %).",
        "",
        f"Garbage collection over {g['manifests']:,} manifests and {g['blobs']:,} blobs "
        f"(half the manifests untagged, all two hours old, grace 1 h), while manifest PUTs "
        f"continue: the pass took **{g['gc_s']:.1f} s**, deleting "
        f"{g['deleted_manifests']:,} manifests and {g['deleted_blobs']:,} blobs "
        f"({g['reclaimed_mib']:.1f} MiB; {g['skipped_steps']} steps skipped).",
        "",
        "| manifest PUT | ops/s | p99 (ms) |",
        "| --- | ---: | ---: |",
        f"| without a pass | {g['put_without']['ops_s']:,.0f} | "
        f"{g['put_without']['p99_ms']:.1f} |",
        f"| during a {g['window_s']} s window holding the pass | {g['put_during']['ops_s']:,.0f} | "
        f"{g['put_during']['p99_ms']:.1f} |",
        "",
        f"Scrub of {sc['mib']:,} MiB in {sc['blob_mib']} MiB blobs (warm page cache, best of 3): "
        f"`wharf scrub` {sc['wharf_mib_s']:,.0f} MiB/s, `sha256sum` "
        f"{sc['sha256sum_mib_s']:,.0f} MiB/s (ratio "
        f"{sc['wharf_mib_s'] / sc['sha256sum_mib_s']:.2f}).",
    ]
    if not g["pass_within_load"]:
        lines.append("\n(The pass outlasted the PUT load: its p99 covers only part of it.)")
    text = "\n".join(lines)
    print(text)
    update_section(Path(out), "ops", text)
    update_json(HERE / "RESULTS.json", "ops", {"metrics": m, "gc": g, "scrub": sc})
