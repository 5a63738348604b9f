"""Webhooks: manifest pushes, deletes, tag moves and attached signatures are POSTed to the
configured endpoints in Distribution's notification envelope (repository, digest, tag,
media type, artifact kind, actor, request), filtered per endpoint by action and repository;
failed deliveries are retried with backoff and counted; an endpoint that hangs never slows
a push (its bounded queue fills and further events are dropped and counted)."""

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import (OCI_MANIFEST, assert_config_refused, run_wharf, sha256, start_wharf,
                      wait_for_log)
from oci_layout import write_layout
from test_auth import users_config

EVENTS = "application/vnd.docker.distribution.events.v2+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


class Receiver:
    """An HTTP endpoint on loopback that records what is POSTed to it; `failures[path]`
    requests to a path are answered 503 first (-1: always)."""

    def __init__(self):
        self.received = []
        self.failures = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    left = outer.failures.get(self.path, 0)
                    if left:
                        outer.failures[self.path] = left - 1 if left > 0 else left
                    outer.received.append((self.path, self.headers, json.loads(body),
                                           503 if left else 200))
                self.send_response(503 if left else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, path, delivered_only=True):
        with self.lock:
            return [e for p, _, body, status in self.received if p == path
                    and (status == 200 or not delivered_only) for e in body["events"]]

    def wait_for(self, path, n, timeout=20):
        deadline = time.time() + timeout
        while len(self.events(path)) < n:
            assert time.time() < deadline, (path, n, self.received)
            time.sleep(0.05)
        return self.events(path)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def hook(name, url, **extra):
    text = f'[[webhooks]]\nname = "{name}"\nurl = "{url}"\n'
    for k, v in extra.items():
        text += f"{k} = {json.dumps(v) if not isinstance(v, dict) else inline(v)}\n"
    return text


def inline(d):
    return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in d.items()) + " }"


def metric(s, name, **labels):
    want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in requests.get(f"{s.url}/metrics", auth=s.http.auth).text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


def test_events_in_distributions_envelope(tmp_path, receiver):
    cfg = users_config(tmp_path / "wharf.toml", {"alice": "alice-pw"},
                       [(["**"], ["alice"], ["pull", "push", "overwrite", "delete"])])
    cfg.write_text(cfg.read_text().replace("[auth]\n", '[auth]\nadmins = ["alice"]\n')
                   + hook("all", receiver.url + "/all",
                          headers={"Authorization": "Bearer hook-secret"})
                   + hook("prod-deletes", receiver.url + "/deletes", actions=["delete"],
                          repositories=["prod/**"]))
    s = start_wharf(tmp_path / "data", config=cfg)
    s.http.auth = ("alice", "alice-pw")
    try:
        first, m1 = s.push_image("prod/app", "v1", layers=[b"one"])
        raw1 = json.dumps(m1).encode()
        r = s("PUT", "/v2/prod/app/manifests/v1", data=raw1,
              headers={"Content-Type": OCI_MANIFEST, "User-Agent": "hook-test/1"})
        request_id = r.headers["X-Request-Id"]
        push = receiver.wait_for("/all", 2)[1]
        path, headers, _, _ = [x for x in receiver.received if x[0] == "/all"][1]
        assert headers["Content-Type"] == EVENTS
        assert headers["Authorization"] == "Bearer hook-secret"
        assert push["action"] == "push" and push["id"] and push["timestamp"].endswith("Z")
        assert push["target"] == {
            "mediaType": OCI_MANIFEST, "size": len(raw1), "digest": first,
            "length": len(raw1), "repository": "prod/app",
            "url": f"http://{s.host}/v2/prod/app/manifests/{first}", "tag": "v1",
            "artifactKind": "image"}, push
        assert push["actor"] == {"name": "alice"}
        assert push["request"]["id"] == request_id and push["request"]["method"] == "PUT"
        assert push["request"]["useragent"] == "hook-test/1"
        assert push["request"]["host"] == s.host and push["request"]["addr"].startswith("127.")
        assert push["source"]["instanceID"] and push["source"]["addr"]

        # a tag moved: the push, and a tag event naming what it named before
        second, _ = s.push_image("prod/app", "v1", layers=[b"two"])
        events = receiver.wait_for("/all", 4)
        assert [e["action"] for e in events[2:]] == ["push", "tag"]
        assert events[3]["target"]["digest"] == second
        assert events[3]["target"]["previousDigest"] == first
        assert events[3]["target"]["tag"] == "v1"

        # a signature attached, as a referrer and by cosign's tag scheme
        empty = s.push_blob("prod/app", b"{}")
        payload = s.push_blob("prod/app", b'{"critical":{}}')
        sig = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": empty, "size": 2},
               "layers": [{"mediaType": SIMPLE_SIGNING, "digest": payload, "size": 15}]}
        referrer = dict(sig, subject={"mediaType": OCI_MANIFEST, "digest": second,
                                      "size": len(json.dumps(m1))})
        raw = json.dumps(referrer).encode()
        ref_digest = s.push_manifest("prod/app", sha256(raw), raw)
        cosign_tag = "sha256-" + second.split(":")[1] + ".sig"
        tagged_sig = s.push_manifest("prod/app", cosign_tag, sig)
        events = receiver.wait_for("/all", 8)
        attach = [e for e in events if e["action"] == "attach"]
        assert [(e["target"]["digest"], e["target"]["subjectDigest"],
                 e["target"]["artifactKind"]) for e in attach] == [
            (ref_digest, second, "signature"), (tagged_sig, second, "signature")]

        # deletes: a tag, then a manifest; the filtered endpoint sees only these
        assert s("DELETE", f"/v2/prod/app/manifests/{cosign_tag}").status_code == 202
        assert s("DELETE", f"/v2/prod/app/manifests/{ref_digest}").status_code == 202
        dev, _ = s.push_image("dev/app", "x", layers=[b"dev"])
        assert s("DELETE", f"/v2/dev/app/manifests/{dev}").status_code == 202
        deletes = receiver.wait_for("/deletes", 2)
        time.sleep(0.5)
        deletes = receiver.events("/deletes")
        assert [(e["action"], e["target"]) for e in deletes] == [
            ("delete", {"repository": "prod/app", "tag": cosign_tag}),
            ("delete", {"repository": "prod/app", "digest": ref_digest,
                        "url": f"http://{s.host}/v2/prod/app/manifests/{ref_digest}"})]
        events = receiver.wait_for("/all", 12)
        assert [e["action"] for e in events[8:]] == ["delete", "delete", "push", "delete"]
        assert metric(s, "wharf_webhook_deliveries_total", endpoint="all",
                      result="delivered") == 12
    finally:
        s.stop()


def test_a_real_client_push_is_notified(tmp_path, receiver):
    exe = shutil.which("skopeo")
    if not exe:
        pytest.fail("skopeo is not installed: run tests/setup")
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(hook("all", receiver.url + "/all"))
    s = start_wharf(tmp_path / "data", config=cfg)
    policy = tmp_path / "policy.json"
    policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
    try:
        src = tmp_path / "src"
        digest = write_layout(src, "v1", layers=2)
        subprocess.run([exe, "--policy", str(policy), "copy", "--dest-tls-verify=false",
                        f"oci:{src}:v1", f"docker://{s.host}/sk/app:v1"], check=True,
                       capture_output=True, timeout=300)
        (push,) = receiver.wait_for("/all", 1)
        assert push["action"] == "push" and push["target"]["digest"] == digest
        assert push["target"]["tag"] == "v1" and push["target"]["repository"] == "sk/app"
        assert "actor" in push and "name" not in push["actor"]  # an open registry: no one
    finally:
        s.stop()


def test_failed_deliveries_are_retried_and_counted(tmp_path, receiver):
    receiver.failures = {"/flaky": 2, "/down": -1}
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(hook("flaky", receiver.url + "/flaky", backoff_ms=50)
                   + hook("down", receiver.url + "/down", backoff_ms=50, max_attempts=3))
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        digest, _ = s.push_image("team/app", "v1")
        (event,) = receiver.wait_for("/flaky", 1)
        tries = [b for p, _, b, _ in receiver.received if p == "/flaky"]
        assert len(tries) == 3 and all(t["events"][0]["id"] == event["id"] for t in tries)
        deadline = time.time() + 20
        while metric(s, "wharf_webhook_deliveries_total", endpoint="down",
                     result="failed") != 1:
            assert time.time() < deadline, s.log_path.read_text()
            time.sleep(0.1)
        assert len(receiver.events("/down", delivered_only=False)) == 3
        assert metric(s, "wharf_webhook_attempt_failures_total", endpoint="down") == 3
        assert metric(s, "wharf_webhook_attempt_failures_total", endpoint="flaky") == 2
        assert metric(s, "wharf_webhook_deliveries_total", endpoint="flaky",
                      result="delivered") == 1
        wait_for_log(s.log_path, "webhook events not delivered: the endpoint answered 503",
                     s.proc)
    finally:
        s.stop()


def test_an_endpoint_that_hangs_never_slows_pushes(tmp_path):
    # accepts connections (the kernel's backlog) and never answers
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("[limits]\nshutdown_timeout_secs = 2\n\n"
                   + hook("hang", f"http://127.0.0.1:{hang.getsockname()[1]}/",
                          timeout_secs=60, queue=2))
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        started = time.time()
        for i in range(10):
            s.push_image("team/app", f"v{i}", layers=[f"layer {i}".encode()])
        # one delivery attempt alone would take a minute: the pushes did not wait for it
        assert time.time() - started < 30
        # the first event (or the first two, had the second come before the sender took
        # the first) in flight, two queued, the rest dropped
        assert metric(s, "wharf_webhook_queue_length", endpoint="hang") == 2
        assert metric(s, "wharf_webhook_dropped_total", endpoint="hang") in (6, 7)
        wait_for_log(s.log_path, "webhook queue full: event dropped", s.proc)
        # a stop waits for queued events only as long as the shutdown timeout
        stopping = time.time()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=20) == 0
        assert time.time() - stopping < 10
        assert "webhook events not delivered within the shutdown timeout (2s)" in s.log()
    finally:
        s.stop()
        hang.close()


def test_a_stop_delivers_the_events_already_queued(tmp_path, receiver):
    """Events of pushes acknowledged before SIGTERM still go out: the registry stops taking
    requests, then waits (within the shutdown timeout) for its queues to empty."""
    receiver.failures = {"/slow": 3}
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(hook("slow", receiver.url + "/slow", backoff_ms=300))
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        digest, _ = s.push_image("team/app", "v1")
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=30) == 0
        # delivered on the fourth attempt, after the signal (three back-offs of 300 ms+)
        [event] = receiver.events("/slow")
        assert event["target"]["digest"] == digest and event["action"] == "push"
        assert len(receiver.events("/slow", delivered_only=False)) == 4
        assert "webhook events not delivered" not in s.log()
    finally:
        s.stop()


def test_retention_and_collection_deletions_are_notified(tmp_path, receiver, tool_env):
    """A collection pass sends a delete event for each tag retention let go and each manifest
    it deleted, with the actor wharf-gc and no request; a dry run sends none."""
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(hook("gone", receiver.url + "/gone", actions=["delete"])
                   + hook("pushes", receiver.url + "/pushes", actions=["push"])
                   + '[[retention]]\nrepositories = ["charts/**"]\nkeep_last = 1\n'
                   + 'order = "semver"\n')
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        digests = {v: s.push_image("charts/app", v, layers=[f"chart {v}".encode()])[0]
                   for v in ("1.0.0", "1.10.0", "1.2.0")}
        receiver.wait_for("/pushes", 3)
        run_wharf(tool_env, "gc", "--registry", s.host, "--dry-run", "--grace", "0s")
        time.sleep(0.5)
        assert receiver.events("/gone", delivered_only=False) == []
        run_wharf(tool_env, "gc", "--registry", s.host, "--grace", "0s")
        events = receiver.wait_for("/gone", 4)
        assert len(events) == 4
        tags = [(e["target"]["repository"], e["target"]["tag"]) for e in events[:2]]
        assert sorted(tags) == [("charts/app", "1.0.0"), ("charts/app", "1.2.0")]
        manifests = sorted(e["target"]["digest"] for e in events[2:])
        assert manifests == sorted([digests["1.0.0"], digests["1.2.0"]])
        for e in events:
            assert e["action"] == "delete" and e["actor"] == {"name": "wharf-gc"}
            assert e["request"]["method"] == "" and "host" not in e["request"]
            assert "url" not in e["target"]
        # the kept tag made no event, and deletions go only where deletes are wanted
        assert all(e["target"].get("tag") != "1.10.0" for e in events)
        assert len(receiver.events("/pushes")) == 3
    finally:
        s.stop()


def test_bad_webhooks_are_refused(tmp_path):
    assert_config_refused(tmp_path, [
        (hook("a", "ftp://x/"), '[[webhooks]] "a": url "ftp://x/": not http or https'),
        (hook("a", "not a url"), '[[webhooks]] "a": url "not a url"'),
        (hook("a", "http://x/", actions=["pull"]),
         '[[webhooks]] "a": unknown action "pull": expected push, delete, tag or attach'),
        (hook("a", "http://x/") + hook("a", "http://y/"),
         '[[webhooks]]: two endpoints are named "a"'),
        (hook("a", "http://x/", max_attempts=0), "max_attempts must be at least 1"),
        (hook("a", "http://x/", queue=0), "queue must be at least 1"),
        (hook("a", "http://x/", headers={"bad header": "v"}),
         'header "bad header" is not a valid HTTP header'),
        ('[[webhooks]]\nurl = "http://x/"\n', "missing field `name`"),
    ])
