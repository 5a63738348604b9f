"""Metrics: `/metrics` in the Prometheus text format with the series that oras and cosign
dashboards query (push outcomes by repository and artifact kind, pull durations, pull-policy
verifications by error code, storage bytes and limit) and Wharf's own (requests, uploads in
progress, dangling manifests, scrub); who may read them; bounded labels; the shipped alert
rules, checked by promtool against series from a real scrape and loaded by a real
Prometheus that scrapes a Wharf under test."""

import json
import os
import re
import subprocess
import time

import pytest
import requests
from conftest import (OCI_MANIFEST, ROOT, error_code, free_port, run_wharf, sha256, start_wharf)
from test_auth import users_config

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
POLICY = """
[[rules]]
name = "production"
repositories = ["prod/**"]
keys = ["prod.pub"]
"""


def parse(text):
    """{(name, ((label, value), ...)): value} of a text-format exposition."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        assert m, line
        labels = tuple(sorted(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")))
        series[(m.group(1), labels)] = float(m.group(3))
    return series


def value(series, name, **labels):
    return series.get((name, tuple(sorted(labels.items()))))


wharf = run_wharf


@pytest.fixture
def busy(tmp_path, tool_env):
    """A Wharf with a pull policy and metrics on a port of their own, after pushes that
    succeed and fail, pulls refused and allowed by the policy, an untagged manifest and an
    unfinished upload. Yields (server, metrics URL, tool environment)."""
    env = dict(tool_env, COSIGN_PASSWORD="pw")
    wharf(env, "key", "generate", "--output-key-prefix", "prod", cwd=tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    port = free_port()
    (tmp_path / "wharf.toml").write_text(f"""
pull_policy = "{tmp_path / 'policy.toml'}"
[metrics]
listen = "127.0.0.1:{port}"
usage_refresh_secs = 0
storage_limit_bytes = 10000000
""")
    s = start_wharf(tmp_path / "data", config=tmp_path / "wharf.toml")
    (tmp_path / "f.txt").write_text("payload")
    wharf(env, "push", f"{s.host}/prod/app:v1", "f.txt", cwd=tmp_path)
    get = lambda: s("GET", "/v2/prod/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert get().status_code == 403  # unsigned: refused
    wharf(env, "sign", "--key", "prod.key", f"{s.host}/prod/app:v1", cwd=tmp_path)
    assert get().status_code == 200
    # an image manifest naming a blob that is not there: a failed push of an image
    missing = sha256(b"never pushed")
    cfg = s.push_blob("prod/app", b"{}")
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg,
                    "size": 2},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "digest": missing, "size": 12}]}
    r = s("PUT", "/v2/prod/app/manifests/broken", data=json.dumps(m),
          headers={"Content-Type": OCI_MANIFEST})
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    # a blob whose bytes do not match the digest it claims: a failed blob upload
    r = s("POST", "/v2/prod/app/blobs/uploads/", params={"digest": missing}, data=b"other")
    assert error_code(r) == "DIGEST_INVALID"
    # a manifest pushed by digest alone is dangling; an upload left open is in progress
    m["layers"] = []
    s.push_blob("dev/tool", b"{}")
    s.push_manifest("dev/tool", sha256(json.dumps(m).encode()), json.dumps(m).encode())
    assert s("POST", "/v2/dev/tool/blobs/uploads/").status_code == 202
    yield s, f"http://127.0.0.1:{port}/metrics", env
    s.stop()


def test_the_dashboard_series_as_the_registry_sees_them(busy):
    s, url, _ = busy
    r = requests.get(url)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = parse(r.text)
    assert value(got, "oras_push_success_total", repository="prod/app",
                 artifact_type="other") == 1
    # the signature is a push too, of its own kind
    assert value(got, "oras_push_success_total", repository="prod/app",
                 artifact_type="signature") == 1
    assert value(got, "oras_push_failure_total", repository="prod/app",
                 artifact_type="image") == 1
    assert value(got, "oras_push_failure_total", repository="prod/app",
                 artifact_type="blob") == 1
    assert value(got, "cosign_verify_total", repository="prod/app",
                 error_code="NoSignaturesFound") == 1
    assert value(got, "cosign_verify_failure_total", repository="prod/app",
                 error_code="NoSignaturesFound") == 1
    assert value(got, "cosign_verify_total", repository="prod/app", error_code="none") == 1
    assert value(got, "oras_pull_duration_seconds_count", repository="prod/app") >= 1
    assert value(got, "oras_pull_duration_seconds_bucket", repository="prod/app",
                 le="+Inf") >= 1
    assert value(got, "registry_storage_limit_bytes") == 10000000
    used = value(got, "registry_storage_used_bytes")
    per_repo = value(got, "registry_artifact_storage_bytes", repository="prod/app",
                     artifact_type="other")
    assert used > 0 and per_repo > 0, got
    assert value(got, "wharf_dangling_manifests") == 1
    assert value(got, "wharf_uploads_in_progress") == 1
    assert value(got, "wharf_http_requests_total", method="PUT", route="manifest",
                  status="201") >= 2
    assert value(got, "wharf_http_request_duration_seconds_count", method="GET",
                 route="manifest") >= 2
    for result in ("ok", "corrupt", "missing"):
        assert value(got, "wharf_scrub_blobs_total", result=result) == 0
    # the metrics are on their own port: the API port has none
    r = s("GET", "/metrics")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"


def test_who_may_read_the_metrics(tmp_path):
    users = {"alice": "alice-pw", "prom": "prom-pw", "root": "root-pw"}
    cfg = users_config(tmp_path / "wharf.toml", users, [(["**"], ["alice"], ["pull", "push"])])
    base = cfg.read_text().replace("[auth]\n", '[auth]\nadmins = ["root"]\n')
    cfg.write_text(base + '[metrics]\nusers = ["prom"]\n')
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        r = requests.get(f"{s.url}/metrics")
        assert r.status_code == 401 and "www-authenticate" in r.headers
        r = requests.get(f"{s.url}/metrics", auth=("alice", "alice-pw"))
        assert r.status_code == 403 and error_code(r) == "DENIED"
        assert "alice may not read the metrics" in r.json()["errors"][0]["message"]
        for who in ("prom", "root"):
            r = requests.get(f"{s.url}/metrics", auth=(who, users[who]))
            assert r.status_code == 200 and "wharf_http_requests_total" in r.text, who
        r = requests.post(f"{s.url}/metrics", auth=("prom", "prom-pw"))
        assert r.status_code == 405
    finally:
        s.stop()
    cfg.write_text(base + "[metrics]\npublic = true\n")
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        assert requests.get(f"{s.url}/metrics").status_code == 200
    finally:
        s.stop()
    cfg.write_text(base + "[metrics]\nenabled = false\n")
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        r = requests.get(f"{s.url}/metrics", auth=("root", "root-pw"))
        assert r.status_code == 404
    finally:
        s.stop()


def test_repository_labels_are_capped(tmp_path):
    (tmp_path / "wharf.toml").write_text(
        "[metrics]\nmax_repositories = 2\nusage_refresh_secs = 0\n")
    s = start_wharf(tmp_path / "data", config=tmp_path / "wharf.toml")
    try:
        for i, size in enumerate((100, 300, 200, 50)):
            s.push_image(f"team/r{i}", "v1", layers=(os.urandom(size),))
        got = parse(requests.get(f"{s.url}/metrics").text)
        pushes = {dict(k[1])["repository"]: v for k, v in got.items()
                  if k[0] == "oras_push_success_total"}
        # counters: the first two repositories seen, then the rest together
        assert pushes == {"team/r0": 1, "team/r1": 1, "_other": 2}, pushes
        stored = {dict(k[1])["repository"] for k in got
                  if k[0] == "registry_artifact_storage_bytes"}
        # the storage gauge: the two largest, then the rest together
        assert stored == {"team/r1", "team/r2", "_other"}, stored
    finally:
        s.stop()


def test_alert_rules_check_and_fire_on_real_series(busy, tmp_path):
    """promtool checks the rules, then unit-tests them with input series whose names and
    label sets are copied from a real scrape of the Wharf above, so a renamed metric or
    label fails here."""
    _, url, _ = busy
    r = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "SUCCESS: 5 rules found" in r.stdout, r.stdout + r.stderr
    got = parse(requests.get(url).text)

    def series(name, **match):
        """The one scraped series of `name` whose labels include `match`, as PromQL."""
        found = [labels for (n, labels) in got if n == name
                 and all(dict(labels).get(k) == v for k, v in match.items())]
        assert len(found) == 1, (name, match, found)
        inner = ",".join(f'{k}="{v}"' for k, v in found[0])
        return f"{name}{{{inner}}}" if inner else name

    push_failures = series("oras_push_failure_total", artifact_type="image")
    verify_fail = series("cosign_verify_failure_total", error_code="NoSignaturesFound")
    verify_bad = series("cosign_verify_total", error_code="NoSignaturesFound")
    verify_ok = series("cosign_verify_total", error_code="none")
    def case(inputs, *checks):
        """A promtool test case: input series (sampled each minute) and alert checks."""
        return {"interval": "1m",
                "input_series": [{"series": k, "values": v} for k, v in inputs.items()],
                "alert_rule_test": list(checks)}

    def fires(at, alert, labels, summary, description):
        return {"eval_time": at, "alertname": alert,
                "exp_alerts": [{"exp_labels": labels,
                                "exp_annotations": {"summary": summary,
                                                    "description": description}}]}

    def quiet(at, alert):
        return {"eval_time": at, "alertname": alert, "exp_alerts": []}

    prod = {"repository": "prod/app"}
    # The `instance` label is Prometheus's, absent from unit-test series: hence "on ;".
    tests = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": [
        # a push failing every 2 s for 10 minutes fires; not before 5 minutes have passed
        case({push_failures: "0+30x20",
              series("oras_push_failure_total", artifact_type="blob"): "0+0x20"},
             fires("12m", "OCIArtifactPushFailures", dict(prod, severity="warning"),
                   "Pushes to prod/app are failing",
                   "0.50 failed pushes per second to prod/app over the last 5 minutes."),
             quiet("3m", "OCIArtifactPushFailures")),
        # half the verifications failing fires; 1 in 100 does not
        case({verify_fail: "0+60x20", verify_bad: "0+60x20", verify_ok: "0+60x20"},
             fires("12m", "CosignVerificationFailures", dict(prod, severity="critical"),
                   "Signature verification failing for prod/app",
                   "50% of the pull policy's signature verifications in prod/app failed "
                   "over the last 5 minutes.")),
        case({verify_fail: "0+1x20", verify_bad: "0+1x20", verify_ok: "0+99x20"},
             quiet("12m", "CosignVerificationFailures")),
        # 90 % of the limit fires once it has lasted 15 minutes
        case({series("registry_storage_used_bytes"): "9000000x30",
              series("registry_storage_limit_bytes"): "10000000x30"},
             fires("20m", "RegistryStorageHigh", {"severity": "warning"},
                   "Registry storage above 85% of its limit",
                   " uses 90% of its storage limit."),
             quiet("10m", "RegistryStorageHigh")),
        # 100 more dangling manifests a minute, for hours
        case({series("wharf_dangling_manifests"): "0+100x480"},
             fires("8h", "WharfDanglingManifestsGrowing", {"severity": "info"},
                   "Dangling manifests are piling up",
                   "36k more untagged, unreferenced manifests than 6 hours ago on ; check "
                   "that garbage collection runs.")),
        # one corrupt blob found
        case({series("wharf_scrub_blobs_total", result="corrupt"): "0 0 1 1 1",
              series("wharf_scrub_blobs_total", result="ok"): "0+100x4"},
             fires("4m", "WharfScrubFoundCorruptBlobs",
                   {"severity": "critical", "result": "corrupt"},
                   "Scrub found damaged blobs",
                   "1 blobs corrupt in the last day on ; they are quarantined until pushed "
                   "again (see the log for digests)."),
             quiet("1m", "WharfScrubFoundCorruptBlobs")),
    ]}
    path = tmp_path / "alerts.test.yml"
    path.write_text(json.dumps(tests, indent=1))  # YAML reads JSON
    r = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_scrapes_wharf_and_answers_the_dashboard_queries(busy, tmp_path):
    s, url, env = busy
    port = free_port()
    target = url.split("/")[2]
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{ALERTS}"]
scrape_configs:
  - job_name: wharf
    static_configs: [{{targets: ["{target}"]}}]
""")
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log)
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(q):
        r = requests.get(f"{api}/query", params={"query": q}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["data"]["result"]

    try:
        deadline = time.time() + 60
        while True:
            try:
                if query("count_over_time(up[1m])") and \
                        float(query("count_over_time(up[1m])")[0]["value"][1]) >= 3:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.5)
        assert query("up")[0]["value"][1] == "1"
        # more traffic between scrapes, so that rates are not zero
        for _ in range(3):
            s("PUT", "/v2/prod/app/manifests/broken2", data=b"{}",
              headers={"Content-Type": OCI_MANIFEST})
            s("GET", "/v2/prod/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
            time.sleep(1.1)
        dashboards = {
            "sum by (repository) (rate(oras_push_failure_total[1m]))": ["repository"],
            "histogram_quantile(0.95, sum by (le, repository) "
            "(rate(oras_pull_duration_seconds_bucket[1m])))": ["repository"],
            "sum by (repository) (rate(cosign_verify_failure_total[1m])) / "
            "sum by (repository) (rate(cosign_verify_total[1m]))": ["repository"],
            "registry_storage_used_bytes / registry_storage_limit_bytes": [],
        }
        for q, labels in dashboards.items():
            result = query(q)
            assert result, q
            for sample in result:
                for label in labels:
                    assert sample["metric"].get(label) == "prod/app", (q, sample)
                v = float(sample["value"][1])
                assert v == v and v >= 0, (q, sample)  # a number, not NaN
        ratio = float(query("registry_storage_used_bytes / registry_storage_limit_bytes")
                      [0]["value"][1])
        assert 0 < ratio < 0.85
        rules = requests.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        loaded = {r["name"]: r["health"] for g in rules for r in g["rules"]}
        assert set(loaded) == {"OCIArtifactPushFailures", "CosignVerificationFailures",
                               "RegistryStorageHigh", "WharfDanglingManifestsGrowing",
                               "WharfScrubFoundCorruptBlobs"}, loaded
        assert set(loaded.values()) == {"ok"}, loaded
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        log.close()
