"""Online garbage collection: untagged manifests that nothing keeps, blob links no manifest
references, and blob bytes no repository links are deleted once older than the grace
period, while pushes go on; race-free (every acknowledged manifest stays complete while
collection runs in a loop with a zero grace period); on the embedded default and on
PostgreSQL + S3 with two replicas, one pass at a time; `wharf gc` on demand, dry or not;
`[gc]` on a schedule; admins only."""

import hashlib
import json
import os
import subprocess
import threading
import time

import pytest
import requests

from conftest import (OCI_INDEX, OCI_MANIFEST, error_code, fresh_postgres_database, run_wharf,
                      sha256, start_wharf)
from test_auth import users_config

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def gc(s, grace="0s", dry_run=False, **kw):
    return s("POST", "/v2/_wharf/gc", params={"grace": grace, "dry_run": str(dry_run).lower()},
             **kw)


def fresh_bucket():
    """A bucket of the test's own in the run's Garage node: collection deletes bytes no
    repository of its registry links, so it must not share the run's bucket."""
    if not os.environ.get("WHARF_TEST_S3_ENDPOINT"):
        if os.environ.get("WHARF_TESTS_RUN"):
            pytest.fail("tests/run must provide WHARF_TEST_S3_ENDPOINT")
        pytest.skip("no S3 store: run through tests/run")
    name = "gc-" + os.urandom(6).hex()
    g = ["garage", "-c", os.environ["WHARF_TEST_GARAGE_CONFIG"]]
    subprocess.run(g + ["bucket", "create", name], check=True, capture_output=True, timeout=60)
    subprocess.run(g + ["bucket", "allow", "--read", "--write", "--owner", name, "--key",
                        "wharf-tests"], check=True, capture_output=True, timeout=60)
    return {
        "WHARF_S3_BUCKET": name,
        "WHARF_S3_ENDPOINT": os.environ["WHARF_TEST_S3_ENDPOINT"],
        "WHARF_S3_REGION": "garage",
        "AWS_ACCESS_KEY_ID": os.environ["WHARF_TEST_S3_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["WHARF_TEST_S3_SECRET"],
    }


def image(layers, config=b"{}"):
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
         "layers": [{"mediaType": OCI_LAYER, "digest": sha256(x), "size": len(x)}
                    for x in layers]}
    return json.dumps(m).encode()


def push(s, repo, tag, layers, config=b"{}"):
    """Pushes the blobs and the manifest as a client does; returns the manifest PUT's answer
    (or the first failed blob upload's)."""
    for data in [config, *layers]:
        r = s("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, data=data)
        if r.status_code != 201:
            return r
    return s("PUT", f"/v2/{repo}/manifests/{tag}", data=image(layers, config),
             headers={"Content-Type": OCI_MANIFEST})


def assert_complete(s, repo, tag, manifest):
    r = s("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, (repo, tag, r.text)
    assert r.content == manifest, (repo, tag)
    m = json.loads(manifest)
    for d in [m["config"], *m["layers"]]:
        b = s("GET", f"/v2/{repo}/blobs/{d['digest']}")
        assert b.status_code == 200, (repo, tag, d["digest"], b.status_code)
        assert "sha256:" + hashlib.sha256(b.content).hexdigest() == d["digest"]


def load(servers, grace, seconds=12, clients=8, pause=0.0):
    """Clients push, retag and untag continuously (round-robin over `servers`) while a
    collector runs passes with `grace`, `pause` seconds apart. Returns (acknowledged
    {(repo, tag): manifest}, failed push statuses, reports)."""
    shared = os.urandom(50_000)  # a layer every client pushes: unlinked and relinked often
    acknowledged, failures, reports, errors = {}, [], [], []
    stop = time.time() + seconds
    lock = threading.Lock()

    def client(i):
        try:
            n = 0
            while time.time() < stop and n < 400:
                s = servers[(i + n) % len(servers)]
                repo = f"load/c{i}"
                layers = [os.urandom(2_000 + n), shared]
                r = push(s, repo, f"t{n}", layers)
                manifest = image(layers)
                with lock:
                    if r.status_code == 201:
                        acknowledged[(repo, f"t{n}")] = manifest
                    else:
                        failures.append((r.status_code, error_code(r)))
                if r.status_code == 201 and n % 3 == 0:
                    # a second tag on it, then the first tag removed: the manifest stays
                    r2 = s("PUT", f"/v2/{repo}/manifests/x{n}", data=manifest,
                           headers={"Content-Type": OCI_MANIFEST})
                    with lock:
                        if r2.status_code == 201:
                            acknowledged[(repo, f"x{n}")] = manifest
                        else:
                            failures.append((r2.status_code, error_code(r2)))
                if r.status_code == 201 and n % 4 == 1:
                    # untagged: garbage from now on
                    assert s("DELETE", f"/v2/{repo}/manifests/t{n}").status_code == 202
                    with lock:
                        acknowledged.pop((repo, f"t{n}"), None)
                n += 1
        except Exception as e:  # surfaced below: a thread's assert would be lost
            errors.append(repr(e))

    def collector():
        try:
            k = 0
            while time.time() < stop:
                s = servers[k % len(servers)]
                r = gc(s, grace=grace)
                assert r.status_code in (200, 429), r.text
                if r.status_code == 200:
                    reports.append(r.json())
                k += 1
                time.sleep(pause)
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads.append(threading.Thread(target=collector))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    assert not errors, errors
    return acknowledged, failures, reports


def check_after_load(servers, acknowledged, failures, reports, grace):
    # nothing a client was told is stored went missing (replicas share their stores: each
    # manifest is pulled through one of them, in turns)
    for i, ((repo, tag), manifest) in enumerate(sorted(acknowledged.items())):
        assert_complete(servers[i % len(servers)], repo, tag, manifest)
    # a push may lose a blob it uploaded a moment before (zero grace): it then fails
    # cleanly (its manifest names a blob no longer there, or the blob went while being
    # stored), never with a server error
    allowed = ("MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID")
    assert all(status == 400 and code in allowed for status, code in failures), \
        sorted(set(failures))
    deleted = sum(len(r["manifests"]) for r in reports)
    assert reports and deleted > 0, "the collector deleted nothing under load"
    assert len(acknowledged) > 50, len(acknowledged)


def test_collection_under_load_loses_nothing_acknowledged(tmp_path):
    s = start_wharf(tmp_path / "data")
    try:
        acknowledged, failures, reports = load([s], grace="0s")
        check_after_load([s], acknowledged, failures, reports, "0s")
        # once pushes stop, one more pass leaves exactly the bytes the manifests name
        assert gc(s).status_code == 200
        on_disk = {p.parent.parent.name + ":" + p.name
                   for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()}
        named = set()
        for manifest in acknowledged.values():
            m = json.loads(manifest)
            named |= {d["digest"] for d in [m["config"], *m["layers"]]}
        assert on_disk == named
        for (repo, tag), manifest in acknowledged.items():
            assert_complete(s, repo, tag, manifest)
    finally:
        s.stop()


def test_a_grace_period_protects_pushes_in_progress(tmp_path):
    s = start_wharf(tmp_path / "data")
    try:
        acknowledged, failures, reports = load([s], grace="1h", seconds=6, clients=4)
        assert failures == []
        for (repo, tag), manifest in acknowledged.items():
            assert_complete(s, repo, tag, manifest)
        assert all(r["manifests"] == [] and r["blobs"] == [] for r in reports)
    finally:
        s.stop()


def test_collection_across_replicas_on_postgres_and_s3(tmp_path):
    env = dict(fresh_bucket(), WHARF_METADATA_URL=fresh_postgres_database())
    servers = [start_wharf(tmp_path / f"r{i}", env=env) for i in range(2)]
    try:
        # pushes through S3 take longer: passes a moment apart let some complete
        acknowledged, failures, reports = load(servers, grace="0s", seconds=15, clients=6,
                                               pause=0.3)
        check_after_load(servers, acknowledged, failures, reports, "0s")
        # bytes of blobs unlinked long enough leave the bucket
        a = servers[0]
        layer = os.urandom(10_000)
        assert push(a, "gone/app", "v1", [layer]).status_code == 201
        assert a("DELETE", "/v2/gone/app/manifests/v1").status_code == 202
        r = gc(a).json()
        assert any(m.startswith("gone/app@") for m in r["manifests"])
        assert f"gone/app@{sha256(layer)}" in r["links"]
        # the bytes are younger than the minute replicas are given: kept for now
        assert sha256(layer) not in r["blobs"]
        import boto3
        s3 = boto3.client("s3", endpoint_url=env["WHARF_S3_ENDPOINT"], region_name="garage",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        key = "blobs/" + sha256(layer).replace(":", "/")
        s3.head_object(Bucket=env["WHARF_S3_BUCKET"], Key=key)
        time.sleep(61)
        r = gc(servers[1]).json()
        assert sha256(layer) in r["blobs"], r
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket=env["WHARF_S3_BUCKET"], Key=key)
    finally:
        for s in servers:
            s.stop()


def test_one_pass_at_a_time_across_replicas(tmp_path):
    url = fresh_postgres_database()
    servers = [start_wharf(tmp_path / f"r{i}", "--metadata-url", url) for i in range(2)]
    holder = subprocess.Popen(["psql", url, "-qAt"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        # another replica's pass holds the pass lock (here: a session holding it)
        holder.stdin.write("SELECT pg_advisory_lock(x'574841524650'::bigint);\nSELECT 'held';\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() in ("", "held")
        deadline = time.time() + 10
        while True:
            r = gc(servers[0])
            if r.status_code == 429 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert r.status_code == 429 and error_code(r) == "TOOMANYREQUESTS", r.text
        assert "another garbage collection pass is running" in r.text
        assert gc(servers[1]).status_code == 429
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert gc(servers[1]).status_code == 200
    for s in servers:
        s.stop()


def test_what_stays_and_what_goes_and_the_dry_run(tmp_path):
    s = start_wharf(tmp_path / "data")
    try:
        repo = "keep/app"
        # a tagged image and its signature (a referrer): both stay
        tagged = push(s, repo, "v1", [b"tagged layer"]).headers["Docker-Content-Digest"]
        sig = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x-sig",
               "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                          "digest": sha256(b"{}"), "size": 2},
               "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": tagged,
                                         "size": len(image([b"tagged layer"]))}}
        sig_digest = s.push_manifest(repo, sha256(json.dumps(sig).encode()),
                                     json.dumps(sig).encode())
        # a tagged index whose children are untagged: all stay
        kids = [push(s, repo, f"kid{i}", [f"kid {i}".encode()]) for i in range(2)]
        kid_digests = [k.headers["Docker-Content-Digest"] for k in kids]
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": len(image([f"kid {i}".encode()]))}
            for i, d in enumerate(kid_digests)]}
        s.push_manifest(repo, "multi", json.dumps(index).encode(), OCI_INDEX)
        for i in range(2):
            assert s("DELETE", f"/v2/{repo}/manifests/kid{i}").status_code == 202
        # an untagged index with an untagged child, and a referrer of an untagged image: go
        gone_child = push(s, repo, "gc1", [b"gone child"]).headers["Docker-Content-Digest"]
        gone_index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": gone_child,
             "size": len(image([b"gone child"]))}]}).encode()
        gone_index_digest = s.push_manifest(repo, "gi", gone_index, OCI_INDEX)
        lone = push(s, repo, "lone", [b"lone layer"]).headers["Docker-Content-Digest"]
        ref = dict(sig, subject={"mediaType": OCI_MANIFEST, "digest": lone,
                                 "size": len(image([b"lone layer"]))})
        ref_digest = s.push_manifest(repo, sha256(json.dumps(ref).encode()),
                                     json.dumps(ref).encode())
        for t in ("gc1", "gi", "lone"):
            assert s("DELETE", f"/v2/{repo}/manifests/{t}").status_code == 202
        # a blob uploaded and never referenced, and one whose link was deleted: go
        stray = s.push_blob(repo, b"stray blob")
        dropped = s.push_blob("other/repo", b"dropped blob")
        assert s("DELETE", f"/v2/other/repo/blobs/{dropped}").status_code == 202

        # a grace period longer than all of this: nothing goes
        r = gc(s, grace="1h").json()
        assert (r["manifests"], r["links"], r["blobs"]) == ([], [], []), r
        dry = gc(s, dry_run=True).json()
        expect_manifests = {f"{repo}@{d}" for d in (gone_child, gone_index_digest, lone,
                                                    ref_digest)}
        assert set(dry["manifests"]) == expect_manifests, dry
        expect_blobs = {sha256(b"gone child"), sha256(b"lone layer"), stray, dropped}
        assert set(dry["blobs"]) == expect_blobs, dry
        assert dry["dryRun"] is True
        for d in (gone_index_digest, lone):  # the dry run deleted nothing
            assert s("HEAD", f"/v2/{repo}/manifests/{d}").status_code == 200
        real = gc(s).json()
        assert set(real["manifests"]) == expect_manifests, real
        assert set(real["blobs"]) == expect_blobs, real
        assert set(real["links"]) == set(dry["links"]), (real, dry)
        assert real["manifestBytes"] == dry["manifestBytes"] > 0
        assert real["blobBytes"] == dry["blobBytes"] == sum(
            len(x) for x in (b"gone child", b"lone layer", b"stray blob", b"dropped blob"))
        for d in (gone_child, gone_index_digest, lone, ref_digest):
            assert s("HEAD", f"/v2/{repo}/manifests/{d}").status_code == 404
        for d in (tagged, sig_digest, *kid_digests):
            assert s("HEAD", f"/v2/{repo}/manifests/{d}").status_code == 200
        assert_complete(s, repo, "v1", image([b"tagged layer"]))
        for i, d in enumerate(kid_digests):
            assert_complete(s, repo, d, image([f"kid {i}".encode()]))
        for b in expect_blobs:
            alg, hex_ = b.split(":")
            assert not (tmp_path / "data" / "blobs" / alg / hex_[:2] / hex_).exists()
        # a pass with nothing left to do
        again = gc(s).json()
        assert (again["manifests"], again["blobs"]) == ([], [])
    finally:
        s.stop()


def test_scheduled_collection_and_its_metrics(tmp_path):
    (tmp_path / "wharf.toml").write_text("[gc]\ninterval_secs = 1\ngrace_secs = 0\n")
    s = start_wharf(tmp_path / "data", config=tmp_path / "wharf.toml")
    try:
        layer = os.urandom(5000)
        assert push(s, "sched/app", "v1", [layer]).status_code == 201
        assert s("DELETE", "/v2/sched/app/manifests/v1").status_code == 202
        alg, hex_ = sha256(layer).split(":")
        path = tmp_path / "data" / "blobs" / alg / hex_[:2] / hex_
        deadline = time.time() + 30
        while path.exists():
            assert time.time() < deadline, s.log_path.read_text()
            time.sleep(0.2)
        s.wait_log("garbage collection pass")
        # the pass's counts reach the metrics just after its log line
        while 'wharf_gc_deleted_total{kind="manifest"} 1' not in (
                text := requests.get(f"{s.url}/metrics").text):
            assert time.time() < deadline, text
            time.sleep(0.2)
        assert 'wharf_gc_deleted_total{kind="blob"}' in text
        assert "wharf_gc_reclaimed_bytes_total" in text
    finally:
        s.stop()


def test_who_may_collect_and_bad_requests(tmp_path, tool_env):
    users = {"admin": "admin-pw", "alice": "alice-pw"}
    cfg = users_config(tmp_path / "wharf.toml", users, [(["**"], ["alice"], ["pull", "push"])])
    cfg.write_text(cfg.read_text().replace("[auth]\n", '[auth]\nadmins = ["admin"]\n'))
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        assert gc(s).status_code == 401
        r = gc(s, auth=("alice", "alice-pw"))
        assert r.status_code == 403 and error_code(r) == "DENIED"
        assert "alice may not run garbage collection" in r.text
        assert gc(s, auth=("admin", "admin-pw")).status_code == 200
        r = gc(s, grace="soon", auth=("admin", "admin-pw"))
        assert r.status_code == 400
        assert 'grace "soon" is not a duration' in r.json()["errors"][0]["message"]
        r = s("POST", "/v2/_wharf/gc", params={"dry_run": "maybe"}, auth=("admin", "admin-pw"))
        assert r.status_code == 400
        assert r.json()["errors"][0]["message"] == 'dry_run must be true or false, not "maybe"'
        r = s("GET", "/v2/_wharf/gc", auth=("admin", "admin-pw"))
        assert r.status_code == 405
        # the CLI, through the registry, with the admin's credentials
        env = dict(tool_env, WHARF_USERNAME="admin", WHARF_PASSWORD="admin-pw")
        r = run_wharf(env, "gc", "--registry", s.host, "--dry-run", "--plain-http")
        assert r.stdout.strip().startswith("would delete 0 tags, 0 manifests"), r.stdout
        env = dict(tool_env, WHARF_USERNAME="alice", WHARF_PASSWORD="alice-pw")
        r = run_wharf(env, "gc", "--registry", s.host, "--plain-http", check=False)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert "alice may not run garbage collection" in r.stderr
        # beside a serving embedded registry, a second process may not collect
        r = run_wharf(tool_env, "gc", "--data-dir", tmp_path / "data", check=False)
        assert r.returncode == 1 and "a registry is serving from" in r.stderr, r.stderr
        assert "wharf gc --registry HOST" in r.stderr
        r = run_wharf(tool_env, "gc", "--data-dir", tmp_path / "data", "--grace", "x",
                      check=False)
        assert r.returncode == 1 and "--grace \"x\" is not a duration" in r.stderr, r.stderr
    finally:
        s.stop()
    # stopped, it may: the same pass, in this process
    r = run_wharf(tool_env, "gc", "--data-dir", tmp_path / "data", "--format", "json")
    report = json.loads(r.stdout)
    assert report["dryRun"] is False and report["graceSecs"] == 3600
