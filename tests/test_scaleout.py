"""Scale-out: several `wharf serve` replicas sharing one PostgreSQL database and one S3 bucket
(a real Garage node) are interchangeable."""

import json
import os

import pytest

from conftest import OCI_MANIFEST, fresh_postgres_database, sha256, start_wharf


@pytest.fixture
def replicas(tmp_path):
    if not os.environ.get("WHARF_TEST_S3_ENDPOINT"):
        if os.environ.get("WHARF_TESTS_RUN"):
            pytest.fail("tests/run must provide WHARF_TEST_S3_ENDPOINT")
        pytest.skip("no S3 store: run through tests/run")
    url = fresh_postgres_database()
    # each test gets a prefix-free bucket of its own only by name; repositories differ instead
    env = {
        "WHARF_METADATA_URL": url,
        "WHARF_S3_BUCKET": os.environ["WHARF_TEST_S3_BUCKET"],
        "WHARF_S3_ENDPOINT": os.environ["WHARF_TEST_S3_ENDPOINT"],
        "WHARF_S3_REGION": "garage",
        "AWS_ACCESS_KEY_ID": os.environ["WHARF_TEST_S3_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["WHARF_TEST_S3_SECRET"],
    }
    servers = [start_wharf(tmp_path / f"r{i}", env=env) for i in range(3)]
    yield servers
    for s in servers:
        s.stop()


def test_push_through_one_pull_through_the_others(replicas):
    a, b, c = replicas
    repo = "scale/" + os.urandom(4).hex()
    digest, m = a.push_image(repo, "v1", layers=[os.urandom(300_000), os.urandom(7_000_000)])
    for r in (b, c):
        got = r("GET", f"/v2/{repo}/manifests/v1")
        assert got.status_code == 200 and got.headers["Docker-Content-Digest"] == digest
        for d in [m["config"]] + m["layers"]:
            blob = r("GET", f"/v2/{repo}/blobs/{d['digest']}")
            assert blob.status_code == 200 and sha256(blob.content) == d["digest"]
    # a tag moved on one replica is read at once on the others
    d2, _ = c.push_image(repo, "v1", layers=[b"moved"])
    assert a("HEAD", f"/v2/{repo}/manifests/v1").headers["Docker-Content-Digest"] == d2
    assert b("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]


def test_chunked_upload_across_replicas(replicas):
    a, b, c = replicas
    repo = "scale/" + os.urandom(4).hex()
    data = os.urandom(13_000_000)
    loc = a("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    at = 0
    for server, n in ((a, 2_000_000), (b, 6_000_000), (c, 3_000_000)):
        r = server("PATCH", loc, data=data[at:at + n],
                   headers={"Content-Range": f"{at}-{at + n - 1}"})
        assert r.status_code == 202, r.text
        at += n
        assert a("GET", loc).headers["Range"] == f"0-{at - 1}"
    r = b("PUT", loc, params={"digest": sha256(data)}, data=data[at:])
    assert r.status_code == 201, r.text
    for server in replicas:
        assert server("GET", f"/v2/{repo}/blobs/{sha256(data)}").content == data
    # an out-of-order chunk is refused whichever replica gets it
    loc = c("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    assert a("PATCH", loc, data=b"abc", headers={"Content-Range": "0-2"}).status_code == 202
    r = b("PATCH", loc, data=b"abc", headers={"Content-Range": "0-2"})
    assert r.status_code == 416 and r.headers["Range"] == "0-2"


def all_read(sock):
    """Whether everything sent on this client socket has reached the server and been read
    there: nothing unacknowledged on our side, nothing queued unread on the server's."""
    import fcntl
    import struct
    import subprocess
    outq = struct.unpack("i", fcntl.ioctl(sock.fileno(), 0x5411, b"\0" * 4))[0]  # SIOCOUTQ
    here, there = sock.getsockname(), sock.getpeername()
    ss = subprocess.run(["ss", "-Htn", "state", "established", "src", f"{there[0]}:{there[1]}",
                         "dst", f"{here[0]}:{here[1]}"], capture_output=True, text=True)
    rows = ss.stdout.split()
    return outq == 0 and bool(rows) and rows[0] == "0"


def test_sigkill_of_a_replica_mid_push(replicas):
    """Everything acknowledged stays served by the others, and the upload the dead replica
    was receiving resumes on another from its last acknowledged byte."""
    import signal
    import time
    a, b, c = replicas
    repo = "scale/" + os.urandom(4).hex()
    done, m = a.push_image(repo, "before", layers=[os.urandom(200_000)])
    data = os.urandom(9_000_000)
    loc = a("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    assert a("PATCH", loc, data=data[:6_000_000],
             headers={"Content-Range": "0-5999999"}).status_code == 202
    # a second chunk is half sent when the replica dies
    sock = a.send_raw((f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Range: 6000000-8999999\r\n"
                       f"Content-Length: 3000000\r\n\r\n").encode() + data[6_000_000:7_500_000],
                      close=False)
    # Killed once the replica has read all that was sent, not after a guess.
    deadline = time.time() + 10
    while not all_read(sock):
        assert time.time() < deadline, "the replica never read the half chunk"
        time.sleep(0.01)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    sock.close()
    assert b("GET", f"/v2/{repo}/manifests/before").headers["Docker-Content-Digest"] == done
    for d in [m["config"]] + m["layers"]:
        assert sha256(c("GET", f"/v2/{repo}/blobs/{d['digest']}").content) == d["digest"]
    assert b("GET", loc).headers["Range"] == "0-5999999"
    r = b("PATCH", loc, data=data[6_000_000:], headers={"Content-Range": "6000000-8999999"})
    assert r.status_code == 202, r.text
    assert c("PUT", loc, params={"digest": sha256(data)}).status_code == 201
    assert b("GET", f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_fifty_clients_push_overlapping_images_through_all_replicas(replicas):
    import concurrent.futures
    import random
    import requests as rq
    repo_base = "scale/" + os.urandom(4).hex()
    shared = [os.urandom(100_000) for _ in range(4)]  # layers every image reuses

    def push(i):
        server = replicas[i % 3]
        http = rq.Session()
        repo = f"{repo_base}/app{i % 5}"
        rnd = random.Random(i)
        layers = rnd.sample(shared, 2) + [os.urandom(rnd.choice([10, 50_000, 600_000]))]
        descs = []
        for data in layers + [b'{"i":%d}' % i]:
            d = sha256(data)
            r = http.post(f"{server.url}/v2/{repo}/blobs/uploads/", params={"digest": d},
                          data=data, timeout=60)
            assert r.status_code == 201, r.text
            descs.append({"mediaType": "application/octet-stream", "digest": d,
                          "size": len(data)})
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": dict(descs[-1], mediaType="application/vnd.oci.image.config.v1+json"),
                          "layers": descs[:-1]}).encode()
        r = http.put(f"{server.url}/v2/{repo}/manifests/t{i}", data=raw,
                     headers={"Content-Type": OCI_MANIFEST}, timeout=60)
        assert r.status_code == 201, r.text
        return repo, f"t{i}", raw

    with concurrent.futures.ThreadPoolExecutor(50) as ex:
        acked = list(ex.map(push, range(50)))
    for n, (repo, tag, raw) in enumerate(acked):
        reader = replicas[(n + 1) % 3]  # never the replica that took the push
        got = reader("GET", f"/v2/{repo}/manifests/{tag}")
        assert got.status_code == 200 and got.content == raw
        for d in [json.loads(raw)["config"]] + json.loads(raw)["layers"]:
            blob = reader("GET", f"/v2/{repo}/blobs/{d['digest']}")
            assert blob.status_code == 200 and sha256(blob.content) == d["digest"]


def test_replicas_expire_each_idle_upload_once(tmp_path):
    """Three replicas expiring at once claim disjoint sessions (FOR UPDATE SKIP LOCKED)."""
    import re
    import time
    if not os.environ.get("WHARF_TEST_S3_ENDPOINT"):
        pytest.skip("no S3 store: run through tests/run")
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[limits]\nupload_expiry_secs = 1\nupload_expiry_check_secs = 1\n")
    env = {
        "WHARF_METADATA_URL": fresh_postgres_database(),
        "WHARF_S3_BUCKET": os.environ["WHARF_TEST_S3_BUCKET"],
        "WHARF_S3_ENDPOINT": os.environ["WHARF_TEST_S3_ENDPOINT"],
        "WHARF_S3_REGION": "garage",
        "AWS_ACCESS_KEY_ID": os.environ["WHARF_TEST_S3_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["WHARF_TEST_S3_SECRET"],
    }
    servers = [start_wharf(tmp_path / f"r{i}", env=env, config=cfg) for i in range(3)]
    try:
        ids = set()
        for i in range(30):
            loc = servers[i % 3]("POST", "/v2/exp/blobs/uploads/").headers["Location"]
            servers[i % 3]("PATCH", loc, data=b"idle bytes")
            ids.add(loc.rsplit("/", 1)[1])
        deadline = time.time() + 20
        found = []
        while time.time() < deadline:
            found = [m for s in servers
                     for m in re.findall(r"upload=([0-9a-f-]{36})\S* expired idle upload|"
                                         r"expired idle upload\S* upload=([0-9a-f-]{36})",
                                         s.log())]
            found = [a or b for a, b in found]
            if len(set(found)) == len(ids):
                break
            time.sleep(0.5)
        assert set(found) == ids
        assert len(found) == len(ids), "an upload was expired by two replicas"
    finally:
        for s in servers:
            s.stop()


def test_presigned_redirect_for_pulls(tmp_path):
    if not os.environ.get("WHARF_TEST_S3_ENDPOINT"):
        pytest.skip("no S3 store: run through tests/run")
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(f"""[s3]
bucket = "{os.environ['WHARF_TEST_S3_BUCKET']}"
endpoint = "{os.environ['WHARF_TEST_S3_ENDPOINT']}"
region = "garage"
access_key_id = "{os.environ['WHARF_TEST_S3_KEY_ID']}"
secret_access_key = "{os.environ['WHARF_TEST_S3_SECRET']}"
presigned_redirect_secs = 300
""")
    s = start_wharf(tmp_path / "d", config=cfg)
    try:
        data = os.urandom(3_000_000)
        d = s.push_blob("redir/x", data)
        r = s("GET", f"/v2/redir/x/blobs/{d}")
        assert r.status_code == 307
        assert r.headers["Location"].startswith(os.environ["WHARF_TEST_S3_ENDPOINT"])
        assert "X-Amz-Signature" in r.headers["Location"]
        followed = s.http.get(r.headers["Location"], timeout=30)
        assert followed.status_code == 200 and followed.content == data
        ranged = s.http.get(r.headers["Location"], headers={"Range": "bytes=10-19"}, timeout=30)
        assert ranged.content == data[10:20]
        # HEAD is answered by the registry itself; unknown blobs are still 404
        assert s("HEAD", f"/v2/redir/x/blobs/{d}").headers["Content-Length"] == str(len(data))
        assert s("GET", f"/v2/redir/x/blobs/{sha256(b'none')}").status_code == 404
    finally:
        s.stop()


def test_same_tag_pushed_through_every_replica_at_once(replicas):
    """Concurrent pushes of one tag through different replicas: one winner, no torn state."""
    import concurrent.futures
    repo = "scale/" + os.urandom(4).hex()
    base = replicas[0].push_blob(repo, b"{}")
    layers = [replicas[0].push_blob(repo, b"variant %d" % i) for i in range(12)]
    bodies = [json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": base, "size": 2},
                          "layers": [{"mediaType": "application/octet-stream", "digest": d,
                                      "size": len(b"variant %d" % i)}]}).encode()
              for i, d in enumerate(layers)]

    def put(i):
        return replicas[i % 3].push_manifest(repo, "latest", bodies[i])

    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        digests = list(ex.map(put, range(12)))
    seen = {r("GET", f"/v2/{repo}/manifests/latest").headers["Docker-Content-Digest"]
            for r in replicas}
    assert len(seen) == 1 and seen <= set(digests)
    winner = replicas[1]("GET", f"/v2/{repo}/manifests/latest")
    assert sha256(winner.content) == winner.headers["Docker-Content-Digest"]
    assert replicas[2]("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["latest"]
