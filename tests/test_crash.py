"""Crash safety: SIGKILL during concurrent pushes loses no acknowledged write and leaves no
visible partial blob or manifest; the next start needs no repair."""

import hashlib
import json
import os
import random
import signal
import threading
import time

import requests

from conftest import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256, start_wharf

PUSHERS = 8
ROUNDS = 3
RUN_SECONDS = 1.5


def pusher(url, worker, acked, stop):
    """Pushes images until stopped; records each one the registry acknowledged."""
    http = requests.Session()
    rnd = random.Random(worker)
    n = 0
    while not stop.is_set():
        n += 1
        repo = f"crash/w{worker}"
        try:
            layers = []
            for _ in range(rnd.randint(1, 3)):
                data = os.urandom(rnd.choice([1, 1000, 70_000, 600_000]))
                d = sha256(data)
                if rnd.random() < 0.5:
                    r = http.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": d},
                                  data=data, timeout=30)
                else:
                    loc = http.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=30)
                    loc = loc.headers["Location"]
                    half = len(data) // 2
                    r = http.patch(url + loc, data=data[:half], timeout=30)
                    r = http.put(url + r.headers["Location"], params={"digest": d},
                                 data=data[half:], timeout=30)
                if r.status_code != 201:
                    raise RuntimeError(r.text)
                layers.append({"mediaType": OCI_LAYER, "digest": d, "size": len(data)})
            cfg = json.dumps({"worker": worker, "n": n}).encode()
            r = http.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(cfg)},
                          data=cfg, timeout=30)
            if r.status_code != 201:
                raise RuntimeError(r.text)
            m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                            "config": {"mediaType": OCI_CONFIG, "digest": sha256(cfg),
                                       "size": len(cfg)},
                            "layers": layers}).encode()
            tag = f"t{n}"
            r = http.put(f"{url}/v2/{repo}/manifests/{tag}", data=m,
                         headers={"Content-Type": OCI_MANIFEST}, timeout=30)
            if r.status_code == 201:
                acked.append((repo, tag, sha256(m), m))
        except (requests.ConnectionError, requests.Timeout, KeyError, RuntimeError):
            if stop.is_set():
                return
            time.sleep(0.01)


def verify(server, acked):
    for repo, tag, digest, raw in acked:
        r = server("GET", f"/v2/{repo}/manifests/{tag}")
        assert r.status_code == 200, (repo, tag, r.text)
        assert r.content == raw and r.headers["Docker-Content-Digest"] == digest
        m = json.loads(raw)
        for desc in [m["config"]] + m["layers"]:
            b = server("GET", f"/v2/{repo}/blobs/{desc['digest']}")
            assert b.status_code == 200, desc
            assert sha256(b.content) == desc["digest"] and len(b.content) == desc["size"]


def no_partial_blobs(data_dir):
    for p in (data_dir / "blobs").rglob("*"):
        if p.is_file():
            alg = p.parent.parent.name
            h = hashlib.new(alg, p.read_bytes()).hexdigest()
            assert h == p.name, f"blob file {p} does not hash to its name"


def test_sigkill_during_concurrent_pushes(tmp_path):
    data_dir = tmp_path / "data"
    all_acked = []
    for round_ in range(ROUNDS):
        s = start_wharf(data_dir)
        verify(s, all_acked)  # everything acknowledged before earlier kills
        acked, stop = [], threading.Event()
        threads = [threading.Thread(target=pusher, args=(s.url, round_ * 100 + w, acked, stop))
                   for w in range(PUSHERS)]
        for t in threads:
            t.start()
        time.sleep(RUN_SECONDS)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert acked, "no push was acknowledged before the kill"
        all_acked += acked
        no_partial_blobs(data_dir)
    s = start_wharf(data_dir)
    try:
        verify(s, all_acked)
        assert list((data_dir / "tmp").iterdir()) == []
        # the registry keeps working normally after the crashes
        s.push_image("crash/after", "ok")
        assert "panicked" not in s.log()
    finally:
        s.stop()
