"""Helpers shared by every benchmark mode (bench.py's main comparison, scaleout.py,
client.py, auth.py): starting servers (through the test suite's conftest), pushing with
curl, load generators (wrk, oha), CPU and memory readings from /proc, test files, and
writing RESULTS.md and RESULTS.json. Each mode imports from here; nothing here imports a
mode, so the imports run one way."""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from conftest import ROOT, start_distribution, start_wharf  # noqa: E402,F401

CLK_TCK = os.sysconf("SC_CLK_TCK")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MiB = 1 << 20

def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def peak_rss_mib(pid):
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"curl {args}: {r.stderr.decode()} {r.stdout[:300]!r}")
    return r.stdout.decode(errors="replace")


def location(url, headers_text):
    m = re.search(r"^location:\s*(\S+)", headers_text, re.I | re.M)
    loc = m.group(1)
    return loc if loc.startswith("http") else url + loc


def push_monolithic(url, repo, path, digest):
    """POST to open a session, then one PUT carrying the whole blob (docker's monolithic)."""
    h = curl("-D", "-", "-o", "/dev/null", "-X", "POST", f"{url}/v2/{repo}/blobs/uploads/")
    loc = location(url, h)
    sep = "&" if "?" in loc else "?"
    curl("-o", "/dev/null", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
         "-T", str(path), f"{loc}{sep}digest={digest}")


def push_chunked(url, repo, chunks, digest):
    h = curl("-D", "-", "-o", "/dev/null", "-X", "POST", f"{url}/v2/{repo}/blobs/uploads/")
    loc = location(url, h)
    off = 0
    for c in chunks:
        size = c.stat().st_size
        h = curl("-D", "-", "-o", "/dev/null", "-X", "PATCH",
                 "-H", "Content-Type: application/octet-stream",
                 "-H", f"Content-Range: {off}-{off + size - 1}", "-T", str(c), loc)
        loc = location(url, h)
        off += size
    sep = "&" if "?" in loc else "?"
    curl("-o", "/dev/null", "-X", "PUT", f"{loc}{sep}digest={digest}")


def timed(server, fn, *args):
    c0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0, cpu_seconds(server.proc.pid) - c0


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99_ms = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    return rps, total, p99_ms, errors


def quiesce():
    """Lets the disk finish writing back earlier phases (gigabytes of blobs), so a phase's
    latency is its own; done identically before each phase for both servers."""
    os.sync()
    time.sleep(2)


def wrk(server, url, connections, seconds, script, env=None):
    quiesce()
    threads = min(2, connections)
    c0 = cpu_seconds(server.proc.pid)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                          "--latency", "-s", str(HERE / script), url],
                         capture_output=True, text=True, env={**os.environ, **(env or {})},
                         check=True).stdout
    cpu = cpu_seconds(server.proc.pid) - c0
    rps, total, p99, errors = parse_wrk(out)
    if errors:
        raise RuntimeError(f"{errors} failed requests against {url}:\n{out}")
    return {"ops_s": rps, "p99_ms": p99, "cpu_ms_per_op": cpu * 1000 / total}


def wrk_with_headers(server, url, headers, connections, seconds, script):
    """wrk GETs of `url` with `headers` (written into `script`), measured like `wrk`."""
    script.write_text("".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items()))
    quiesce()
    c0 = cpu_seconds(server.proc.pid)
    # wrk needs a connection per thread at least.
    threads = str(min(2, connections))
    out = subprocess.run(["wrk", "-t", threads, "-c", str(connections), "-d", f"{seconds}s",
                          "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server.proc.pid) - c0
    rps, total, p99, errors = parse_wrk(out)
    if errors:
        raise RuntimeError(f"{errors} failed requests against {url}:\n{out}")
    return {"ops_s": rps, "p99_ms": p99, "cpu_ms_per_op": cpu * 1000 / total}


def oha(server, url, connections, seconds, method):
    """oha for HEAD: wrk waits for a body that a HEAD response never sends."""
    quiesce()
    c0 = cpu_seconds(server.proc.pid)
    out = subprocess.run(["oha", "--no-tui", "--output-format", "json", "-z", f"{seconds}s",
                          "-c", str(connections), "-m", method, url],
                         capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server.proc.pid) - c0
    j = json.loads(out)
    codes = j.get("statusCodeDistribution", {})
    total = sum(codes.values())
    if set(codes) != {"200"}:
        raise RuntimeError(f"unexpected statuses from {url}: {codes}")
    return {"ops_s": j["summary"]["requestsPerSec"],
            "p99_ms": j["latencyPercentiles"]["p99"] * 1000,
            "cpu_ms_per_op": cpu * 1000 / total}


def push_small_image(url, repo, tag):
    """Pushes a config and one layer with requests; returns the manifest bytes."""
    http = requests.Session()
    descs = []
    for data in (b'{"architecture":"amd64","os":"linux"}', b"bench layer"):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        loc = http.post(f"{url}/v2/{repo}/blobs/uploads/").headers["Location"]
        loc = loc if loc.startswith("http") else url + loc
        sep = "&" if "?" in loc else "?"
        r = http.put(f"{loc}{sep}digest={d}", data=data)
        assert r.status_code == 201, r.text
        descs.append({"digest": d, "size": len(data)})
    m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               **descs[0]},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                **descs[1]}]}).encode()
    r = http.put(f"{url}/v2/{repo}/manifests/{tag}", data=m,
                 headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return m, descs[1]["digest"]


def make_file(path, size, seed=0):
    """Incompressible, reproducible content, written once and reused; `seed` makes files
    that share no block."""
    if path.exists() and path.stat().st_size == size:
        return
    block = hashlib.sha512(b"wharf-bench%d" % seed).digest() * (MiB // 64)
    seed = bytearray(block)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            seed[:8] = i.to_bytes(8, "little")
            f.write(hashlib.sha256(bytes(seed[:64])).digest() * (MiB // 32))


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def ratio(a, b, higher_is_better=True):
    if b == 0 or a == 0:
        return "n/a"
    x = a / b if higher_is_better else b / a
    return f"{x:.1f}x"


def update_section(path, name, text):
    """Replaces one marked section of RESULTS.md, keeping the others (each mode of the
    benchmark writes its own)."""
    begin, end = f"<!-- section {name} -->", f"<!-- end section {name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        new = head + block + ("\n" + after if after else "")
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block
    path.write_text(new)

def update_json(path, key, value):
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=2))


def print_median_table(runs):
    """Prints, per build, the median round (by ops/s) of `runs` ({build: [wrk results]}) as
    the Markdown table bench/RESULTS.md carries."""
    print("| build | ops/s | p99 (ms) | server CPU per op (ms) |\n| --- | ---: | ---: | ---: |")
    for name, rs in runs.items():
        m = sorted(rs, key=lambda r: r["ops_s"])[len(rs) // 2]
        print(f"| {name} | {m['ops_s']:,.0f} | {m['p99_ms']:.2f} | {m['cpu_ms_per_op']:.3f} |")


def run_section(section, what, measure, report, quick, out):
    """Measures in a scratch directory (under $BENCH_DIR when set), then writes the report
    into section `section` of `out` (RESULTS.md) and the figures into RESULTS.json."""
    import shutil
    import tempfile
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix=f"wharf-bench-{section}-",
                                 dir=os.environ.get("BENCH_DIR")))
    try:
        print(f"measuring {what}", file=sys.stderr)
        results = measure(work, quick)
        text = report(results, quick, time.time() - started)
        update_section(Path(out), section, text)
        update_json(Path(out).with_suffix(".json"), section, results)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
