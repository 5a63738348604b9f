"""Scrub: `wharf scrub` (beside a serving registry) and `[scrub] interval_secs` read every
stored blob back and report each one whose bytes changed or vanished; a damaged blob is
quarantined, no longer served, and the next push of the same content repairs it. On the
embedded default, on PostgreSQL and on S3."""

import json
import os
import time

import pytest
import requests

from conftest import (error_code, fresh_postgres_database, run_wharf, s3_env, start_wharf,
                      wait_for_log)


def wharf(env, *args, cwd=None):
    return run_wharf(env, *args, cwd=cwd, check=False)


def layer_digest(s, ref):
    repo, tag = ref.split(":")
    m = s("GET", f"/v2/{repo}/manifests/{tag}",
          headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    return m["layers"][0]["digest"]


class Bucket:
    """The S3 bucket behind Wharf, reached directly (to damage what Wharf stored)."""

    def __init__(self):
        import boto3
        self.name = os.environ["WHARF_TEST_S3_BUCKET"]
        self.s3 = boto3.client(
            "s3", endpoint_url=os.environ["WHARF_TEST_S3_ENDPOINT"], region_name="garage",
            aws_access_key_id=os.environ["WHARF_TEST_S3_KEY_ID"],
            aws_secret_access_key=os.environ["WHARF_TEST_S3_SECRET"])

    def damage(self, digest):
        key = "blobs/" + digest.replace(":", "/")
        data = bytearray(self.s3.get_object(Bucket=self.name, Key=key)["Body"].read())
        data[len(data) // 2] ^= 0x01
        self.s3.put_object(Bucket=self.name, Key=key, Body=bytes(data))

    def remove(self, digest):
        self.s3.delete_object(Bucket=self.name, Key="blobs/" + digest.replace(":", "/"))


class Disk:
    def __init__(self, data_dir):
        self.root = data_dir / "blobs"

    def path(self, digest):
        alg, hex_ = digest.split(":")
        return self.root / alg / hex_[:2] / hex_

    def damage(self, digest):
        p = self.path(digest)
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x01
        p.write_bytes(bytes(data))

    def remove(self, digest):
        self.path(digest).unlink()


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "s3"])
def test_scrub_reports_quarantines_and_a_push_repairs(backend, tmp_path, tool_env):
    data = tmp_path / "data"
    args, env = ["--data-dir", data], dict(tool_env)
    if backend == "postgres":
        args += ["--metadata-url", fresh_postgres_database()]
    elif backend == "s3":
        env.update(s3_env())
    s = start_wharf(data, *args[2:], env={k: v for k, v in env.items()
                                         if k.startswith(("WHARF_", "AWS_"))})
    try:
        store = Bucket() if backend == "s3" else Disk(data)
        files = {}
        for name in ("rots.bin", "vanishes.bin", "fine.bin"):
            files[name] = os.urandom(300_000)
            (tmp_path / name).write_bytes(files[name])
            r = wharf(env, "push", f"{s.host}/team/{name[:-4]}:v1", name, cwd=tmp_path)
            assert r.returncode == 0, r.stderr
        rots = layer_digest(s, "team/rots:v1")
        vanishes = layer_digest(s, "team/vanishes:v1")
        store.damage(rots)
        store.remove(vanishes)

        r = wharf(env, "scrub", *args, "--format", "json")
        assert r.returncode == 5, r.stdout + r.stderr
        report = json.loads(r.stdout)
        assert (report["corrupt"], report["missing"]) == (1, 1), report
        assert report["intact"] == report["blobs"] - 2 and report["intact"] >= 2
        damaged = {d["digest"]: d for d in report["damaged"]}
        assert damaged[rots]["condition"] == "corrupt" and damaged[rots]["quarantined"]
        assert damaged[vanishes]["condition"] == "missing"
        # quarantined: no longer served, and the registry says it lacks the blob
        r = s("GET", f"/v2/team/rots/blobs/{rots}")
        assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
        assert s("HEAD", f"/v2/team/rots/blobs/{rots}").status_code == 404

        # the next push of the same content repairs both
        for name in ("rots.bin", "vanishes.bin"):
            r = wharf(env, "push", f"{s.host}/team/{name[:-4]}:v2", name, cwd=tmp_path)
            assert r.returncode == 0, r.stderr
        r = wharf(env, "scrub", *args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ", 0 corrupt, 0 missing" in r.stdout, r.stdout
        for name in files:
            out = tmp_path / f"out-{name}"
            r = wharf(env, "pull", f"{s.host}/team/{name[:-4]}:v1", "-o", out, cwd=tmp_path)
            assert r.returncode == 0, r.stderr
            assert (out / name).read_bytes() == files[name]
    finally:
        s.stop()


def test_scheduled_scrub_counts_and_logs_damage(tmp_path, tool_env):
    (tmp_path / "wharf.toml").write_text("[scrub]\ninterval_secs = 1\n")
    s = start_wharf(tmp_path / "data", config=tmp_path / "wharf.toml")
    try:
        (tmp_path / "f.bin").write_bytes(os.urandom(100_000))
        assert wharf(tool_env, "push", f"{s.host}/team/app:v1", "f.bin",
                     cwd=tmp_path).returncode == 0
        digest = layer_digest(s, "team/app:v1")
        Disk(tmp_path / "data").damage(digest)
        wait_for_log(s.log_path, rf"corrupt {digest} \(100000 bytes\).*quarantined", s.proc)
        deadline = time.time() + 30
        while True:
            text = requests.get(f"{s.url}/metrics").text
            if 'wharf_scrub_blobs_total{result="corrupt"} 1' in text:
                break
            assert time.time() < deadline, text
            time.sleep(0.2)
        assert 'wharf_scrub_runs_total{result="completed"}' in text
    finally:
        s.stop()


def test_scrub_refuses_a_store_that_is_not_there(tmp_path):
    r = wharf(None, "scrub", "--data-dir", tmp_path / "nothing")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "cannot open the store" in r.stderr and "no blob store in" in r.stderr, r.stderr


def test_replicas_share_one_scheduled_pass_per_interval(tmp_path):
    """Three replicas on one database, each scheduling scrub and collection every 2 s: the
    passes that run, counted over both logs, are one per interval between them, not one per
    replica."""
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[scrub]\ninterval_secs = 2\n[gc]\ninterval_secs = 2\n")
    url = fresh_postgres_database()
    servers = [start_wharf(tmp_path / f"r{i}", "--metadata-url", url, config=cfg)
               for i in range(2)]
    try:
        time.sleep(1)  # the second replica's schedule starts a second after the first's
        servers.append(start_wharf(tmp_path / "r2", "--metadata-url", url, config=cfg))
        time.sleep(11)
    finally:
        for s in servers:
            s.stop()
    logs = [s.log_path.read_text() for s in servers]
    scrubs = sum(log.count("scrub pass done") for log in logs)
    collections = sum(log.count("garbage collection pass") for log in logs)
    # some 12 s hold six 2 s intervals; three replicas each on their own would run 15 or more
    assert 3 <= scrubs <= 8, (scrubs, logs)
    assert 3 <= collections <= 8, (collections, logs)
