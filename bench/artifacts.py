"""Charts, bundles and search: `wharf chart push|pull` beside `helm push|pull`, `wharf
artifact push|pull` beside `flux push|pull artifact` (the same content, the same Wharf, each
run into a repository nobody wrote before), and the search extension over 10,000 indexed
charts (latency at one connection, throughput and server CPU per query at 16). Writes the
artifacts section of bench/RESULTS.md. Run it with `bench/run --artifacts`."""

import hashlib
import json
import os
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from common import run_section, wrk_with_headers
from conftest import WHARF, go_tool, start_wharf

RUNS = 5
CHARTS = 10_000
WORDS = ["cache", "database", "web", "proxy", "queue", "metrics", "logging", "storage",
         "gateway", "auth", "search", "stream", "batch", "ml", "dns", "mesh"]


def median(xs):
    return sorted(xs)[len(xs) // 2]


class Tools:
    def __init__(self, work):
        self.work = work
        home = work / "home"
        home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
        self.env.update({"HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"),
                         "XDG_CONFIG_HOME": str(home / ".config"),
                         "XDG_CACHE_HOME": str(home / ".cache")})

    def run(self, *cmd):
        r = subprocess.run([str(c) for c in cmd], cwd=self.work, env=self.env,
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd}: {r.stderr}")
        return r.stdout

    def timed(self, *cmd):
        t0 = time.perf_counter()
        self.run(*cmd)
        return time.perf_counter() - t0


def make_chart(t):
    """`helm create`'s chart with 1 MiB of values (incompressible), packaged by helm."""
    t.run(go_tool("helm"), "create", "bench")
    rnd = random.Random(7)
    with open(t.work / "bench" / "files.yaml", "w") as f:
        for i in range(8192):
            f.write(f"k{i}: {rnd.getrandbits(512):0128x}\n")
    t.run(go_tool("helm"), "package", "bench")
    return t.work / "bench-0.1.0.tgz"


def make_bundle(root):
    """200 Kubernetes manifests in 20 directories, about 1 MiB."""
    rnd = random.Random(11)
    for d in range(20):
        (root / f"app{d}").mkdir(parents=True)
        for i in range(10):
            data = "".join(f"    k{j}: v{rnd.getrandbits(128):032x}\n" for j in range(120))
            (root / f"app{d}" / f"cm{i}.yaml").write_text(
                f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm{d}-{i}\ndata:\n{data}")


def ops(t, h, runs, chart, bundle):
    helm, flux = go_tool("helm"), go_tool("flux")
    out = {}
    pairs = {
        "chart push": (
            lambda i: t.timed(WHARF, "chart", "push", chart, f"oci://{h}/cw{i}"),
            lambda i: t.timed(helm, "push", chart, f"oci://{h}/ch{i}", "--plain-http")),
        "chart pull": (
            lambda i: t.timed(WHARF, "chart", "pull", f"oci://{h}/cw{i}/bench", "--version",
                              "0.1.0", "-d", t.work / f"pw{i}"),
            lambda i: (t.work / f"ph{i}").mkdir() or t.timed(
                helm, "pull", f"oci://{h}/ch{i}/bench", "--version", "0.1.0", "--plain-http",
                "-d", t.work / f"ph{i}")),
        "bundle push": (
            lambda i: t.timed(WHARF, "artifact", "push", f"oci://{h}/bw{i}:v1", "--path", bundle,
                              "--source", "https://git.example/b", "--revision", "main@sha1:1"),
            lambda i: t.timed(flux, "push", "artifact", f"oci://{h}/bf{i}:v1", "--path", bundle,
                              "--source", "https://git.example/b", "--revision", "main@sha1:1",
                              "--insecure-registry")),
        "bundle pull": (
            lambda i: t.timed(WHARF, "artifact", "pull", f"oci://{h}/bw{i}:v1", "--output",
                              t.work / f"uw{i}"),
            lambda i: (t.work / f"uf{i}").mkdir() or t.timed(
                flux, "pull", "artifact", f"oci://{h}/bf{i}:v1", "--output", t.work / f"uf{i}",
                "--insecure-registry")),
    }
    for op, (ours, theirs) in pairs.items():
        w, p = [], []
        for i in range(runs):  # in turns, so drift hits both alike
            w.append(ours(i))
            p.append(theirs(i))
        out[op] = {"wharf": median(w), "peer": median(p)}
    return out


def upload(s, url, repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r = s.post(f"{url}/v2/{repo}/blobs/uploads/?digest={d}", data=data,
               headers={"content-type": "application/octet-stream"})
    r.raise_for_status()
    return d


def index_charts(url, count):
    """`count` chart versions over count/100 repositories, pushed over the API: one shared
    archive, a config (Chart.yaml as JSON) each, so the index holds `count` charts."""
    archive = os.urandom(4096)
    rnd = random.Random(3)

    def push(k):
        s = requests.Session()
        repo = f"charts/c{k // 100:04d}"
        layer = upload(s, url, repo, archive)
        v = f"{k % 100 // 10}.{k % 10}.0"
        words = rnd.sample(WORDS, 3)
        cfg = json.dumps({"name": f"c{k // 100:04d}", "version": v,
                          "description": f"A {words[0]} for {words[1]}",
                          "keywords": words, "apiVersion": "v2"}).encode()
        cd = upload(s, url, repo, cfg)
        m = {"schemaVersion": 2,
             "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                        "digest": cd, "size": len(cfg)},
             "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                         "digest": layer, "size": len(archive)}]}
        r = s.put(f"{url}/v2/{repo}/manifests/{v}", data=json.dumps(m),
                  headers={"content-type": "application/vnd.oci.image.manifest.v1+json"})
        r.raise_for_status()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(push, range(count)))


def search(server, work, quick):
    seconds = 3 if quick else 10
    script = work / "search.lua"
    queries = {
        "text (about 1 in 5 charts)": "/v2/_wharf/ext/search?q=cache&n=100",
        "text + kind + version range": "/v2/_wharf/ext/search?q=web&kind=helm-chart"
                                       "&version=%5E5.0.0&n=100",
        "no match": "/v2/_wharf/ext/search?q=nothing-like-this&n=100",
    }
    out = {}
    for name, path in queries.items():
        found = requests.get(server.url + path).json()["results"]
        one = wrk_with_headers(server, server.url + path, {}, 1, seconds, script)
        many = wrk_with_headers(server, server.url + path, {}, 16, seconds, script)
        out[name] = {"results": len(found), "p99_ms_1": one["p99_ms"], "ops_s_1": one["ops_s"],
                     "ops_s_16": many["ops_s"], "p99_ms_16": many["p99_ms"],
                     "cpu_ms_per_op": many["cpu_ms_per_op"]}
    return out


def measure(work, quick):
    t = Tools(work)
    runs = 2 if quick else RUNS
    chart = make_chart(t)
    bundle = work / "bundle"
    make_bundle(bundle)
    r = {"chart_bytes": chart.stat().st_size}
    s = start_wharf(work / "data", env={"WHARF_LOG": "warn,wharf=info"})
    try:
        r["ops_s"] = ops(t, s.host, runs, chart, bundle)
    finally:
        s.stop()
    count = 1000 if quick else CHARTS
    s = start_wharf(work / "search", env={"WHARF_LOG": "warn,wharf=info"})
    try:
        t0 = time.perf_counter()
        index_charts(s.url, count)
        r["index_s"] = time.perf_counter() - t0
        r["charts"] = count
        r["search"] = search(s, work, quick)
    finally:
        s.stop()
    return r


def report(r, quick, elapsed):
    lines = [
        "## Charts, bundles and search: wharf against helm and flux",
        "",
        f"Reproduce: `bench/run --artifacts{' --quick' if quick else ''}` (took {elapsed:.0f} s). "
        "One Wharf (embedded default) on this machine. Seconds are the median of "
        f"{2 if quick else RUNS} runs of the whole command, wharf and the peer in turns, each "
        "run into a repository nobody wrote before. The chart is `helm create`'s with 1 MiB of "
        f"incompressible values ({r['chart_bytes'] / 1024:.0f} KiB packaged); the bundle is "
        "200 manifests in 20 directories (about 1 MiB). helm is 3.21.4, flux 2.9.5, built by "
        "tests/setup.",
        "",
        "| operation | wharf (s) | peer (s) | peer | wharf vs peer |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for op, t in r["ops_s"].items():
        peer = "helm" if op.startswith("chart") else "flux"
        lines.append(f"| {op} | {t['wharf']:.3f} | {t['peer']:.3f} | {peer} | "
                     f"{t['peer'] / t['wharf']:.1f}x |")
    lines += [
        "",
        f"Search over {r['charts']:,} indexed chart versions in {r['charts'] // 100} "
        f"repositories (pushed over the API in {r['index_s']:.0f} s), pages of up to 100 "
        "results, wrk for 10 s at 1 connection (latency) and at 16 (throughput, server CPU). "
        "No peer offers a search API; the target is a p99 under 10 ms.",
        "",
        "| query | results | p99 at 1 conn (ms) | queries/s at 16 | p99 at 16 (ms) | server CPU per query (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for q, m in r["search"].items():
        lines.append(f"| {q} | {m['results']} | {m['p99_ms_1']:.2f} | {m['ops_s_16']:.0f} | "
                     f"{m['p99_ms_16']:.2f} | {m['cpu_ms_per_op']:.2f} |")
    return "\n".join(lines) + "\n"


def main(quick, out):
    run_section("artifacts", "charts, bundles and search", measure, report, quick, out)
