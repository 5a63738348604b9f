"""Fixtures that start real servers: Wharf (the release binary) and, as the reference peer,
Debian's docker-registry (CNCF Distribution 2.8). Every server listens on 127.0.0.1 on a port
it picks itself, and is stopped by PID at the end of its test."""

import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
WHARF = Path(os.environ.get("WHARF_BIN", ROOT / "target" / "release" / "wharf"))
# The Go tools tests/setup builds (go install, pinned versions).
GO_TOOLS = ROOT / ".tools" / "go" / "bin"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


class Server:
    """A running server process and an HTTP session bound to its base URL."""

    def __init__(self, proc, url, log_path, data_dir):
        self.backend = "sqlite"
        self.proc = proc
        self.url = url
        self.host = url.split("://", 1)[1]
        self.log_path = log_path
        self.data_dir = data_dir
        self.http = requests.Session()

    def __call__(self, method, path, **kw):
        kw.setdefault("allow_redirects", False)
        kw.setdefault("timeout", 60)
        url = path if path.startswith(("http://", "https://")) else self.url + path
        return self.http.request(method, url, **kw)

    def send_raw(self, data: bytes, close=True):
        """Writes `data` to a fresh connection as is: for requests that requests cannot send,
        such as a body cut short. Returns the socket when left open."""
        host, port = self.host.split(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(data)
        if close:
            sock.close()
        return sock

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    def wait_log(self, *needles, timeout=10):
        """The log once it holds every needle. Lines about a request are written as its
        response goes out, so a client can see the answer before the log says it."""
        deadline = time.time() + timeout
        while True:
            text = self.log()
            if all(n in text for n in needles):
                return text
            if time.time() > deadline:
                raise AssertionError(f"no {needles!r} in the log within {timeout}s:\n{text}")
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()

    # -- helpers that push content the spec's way --

    def push_blob(self, repo, data: bytes, digest=None):
        digest = digest or sha256(data)
        r = self("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data)
        if r.status_code == 202:
            # A registry without monolithic POST (Distribution 2.8) opened a session instead.
            r = self("PUT", r.headers["Location"], params={"digest": digest}, data=data)
        assert r.status_code == 201, r.text
        return digest

    def push_manifest(self, repo, ref, body, media_type=OCI_MANIFEST):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = self("PUT", f"/v2/{repo}/manifests/{ref}", data=raw,
                 headers={"Content-Type": media_type})
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"]

    def push_image(self, repo, tag, layers=(b"layer-one", b"layer-two"), config=b"{}",
                   extra=None):
        """Pushes blobs and an OCI image manifest; returns (digest, manifest dict)."""
        cd = self.push_blob(repo, config)
        descs = []
        for layer in layers:
            descs.append({"mediaType": OCI_LAYER, "digest": self.push_blob(repo, layer),
                          "size": len(layer)})
        m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
             "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(config)},
             "layers": descs}
        m.update(extra or {})
        return self.push_manifest(repo, tag, m), m


def wait_for_log(path, pattern, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = Path(path).read_text(errors="replace") if Path(path).exists() else ""
        m = re.search(pattern, text)
        if m:
            return m
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{text}")
        time.sleep(0.02)
    # A server that never said it was ready is of no use, and must not outlive the test.
    proc.kill()
    proc.wait()
    raise TimeoutError(f"no {pattern!r} in log within {timeout}s:\n{text}")


_starts = itertools.count()


def start_wharf(data_dir, *args, env=None, config=None, listen="127.0.0.1:0", wrapper=()):
    """Starts `wharf serve` (under `wrapper`, a command prefix such as strace, if given) and
    returns a Server once it logs its address. Each start gets its own log file, so a
    restarted server's address is never read from an older log."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}.{next(_starts)}.log"
    cmd = [*wrapper, str(WHARF), "serve", "--data-dir", str(data_dir)]
    if listen:
        cmd += ["--listen", listen]
    if config:
        cmd += ["--config", str(config)]
    cmd += list(args)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    full_env.update(env or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=full_env)
    m = wait_for_log(log_path, r"serving on (https?://[0-9.:]+)", proc)
    return Server(proc, m.group(1), log_path, data_dir)


def fresh_postgres_database():
    """A new, empty database on the cluster tests/run started; its URL. Skips (or, under
    tests/run, fails) when there is no cluster."""
    base = os.environ.get("WHARF_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("WHARF_TESTS_RUN"):
            pytest.fail("tests/run must provide WHARF_TEST_POSTGRES_URL")
        pytest.skip("no PostgreSQL cluster: run through tests/run")
    name = "wharf_" + os.urandom(8).hex()
    subprocess.run(["psql", base, "-qAtc", f"CREATE DATABASE {name}"], check=True,
                   capture_output=True)
    return base.rsplit("/", 1)[0] + "/" + name


def s3_env():
    """The environment that points `wharf serve` at the test run's Garage bucket. Skips (or,
    under tests/run, fails) when there is none."""
    if not os.environ.get("WHARF_TEST_S3_ENDPOINT"):
        if os.environ.get("WHARF_TESTS_RUN"):
            pytest.fail("tests/run must provide WHARF_TEST_S3_ENDPOINT")
        pytest.skip("no S3 store: run through tests/run")
    return {
        "WHARF_S3_BUCKET": os.environ["WHARF_TEST_S3_BUCKET"],
        "WHARF_S3_ENDPOINT": os.environ["WHARF_TEST_S3_ENDPOINT"],
        "WHARF_S3_REGION": "garage",
        "AWS_ACCESS_KEY_ID": os.environ["WHARF_TEST_S3_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["WHARF_TEST_S3_SECRET"],
    }


def garage_unfinished_uploads():
    """Multipart uploads begun and neither completed nor aborted in the test bucket, as the
    Garage node itself counts them."""
    r = subprocess.run(["garage", "-c", os.environ["WHARF_TEST_GARAGE_CONFIG"], "bucket", "info",
                        os.environ["WHARF_TEST_S3_BUCKET"]], capture_output=True, text=True,
                       check=True, timeout=30)
    m = re.search(r"Unfinished uploads:\s+(\d+) multipart", r.stdout)
    return int(m.group(1)) if m else 0


@pytest.fixture(params=["sqlite", "postgres", "s3"])
def wharf(request, tmp_path):
    """Wharf on each backend: the embedded default (SQLite and files), PostgreSQL, and blobs
    in S3 (Garage) with SQLite metadata."""
    args, env = [], None
    if request.param == "postgres":
        args = ["--metadata-url", fresh_postgres_database()]
    elif request.param == "s3":
        env = s3_env()
    s = start_wharf(tmp_path / "data", *args, env=env)
    s.backend = request.param
    yield s
    s.stop()


def run_wharf(env, *args, cwd=None, check=True):
    """Runs the wharf CLI with `env`; with `check`, fails the test unless it exits 0."""
    r = subprocess.run([str(WHARF), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def go_tool(name):
    """The path of a Go tool tests/setup built (oras, crane, regctl, helm, cosign, registry);
    fails the test when it is missing."""
    exe = GO_TOOLS / name
    if not exe.exists():
        pytest.fail(f"{name} is not built: run tests/setup")
    return str(exe)


def start_distribution(tmp_path, users=None, extra_config="", scheme="http", version=2):
    """Starts CNCF Distribution with deletes enabled: Debian's docker-registry (2.8), or with
    `version=3` the registry tests/setup built; with `users` ({name: password}), behind
    htpasswd (bcrypt) basic auth; `extra_config` is appended to its YAML configuration."""
    exe = shutil.which("docker-registry") if version == 2 else go_tool("registry")
    if not exe:
        pytest.fail("docker-registry is not installed: run tests/setup")
    port = free_port()
    root = tmp_path / f"distribution{'' if version == 2 else version}"
    root.mkdir()
    cfg = root / "config.yml"
    cfg.write_text(f"""version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: {root}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    if users:
        import bcrypt
        htpasswd = root / "htpasswd"
        htpasswd.write_text("".join(
            f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
            for u, p in users.items()))
        with open(cfg, "a") as f:
            f.write(f"auth:\n  htpasswd:\n    realm: wharf-tests\n    path: {htpasswd}\n")
    if extra_config:
        with open(cfg, "a") as f:
            f.write(extra_config)
    log = open(root / "log", "ab")
    proc = subprocess.Popen([exe, "serve", str(cfg)], stdout=log, stderr=log)
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if requests.get(url + "/v2/", timeout=1, verify=False).status_code in (200, 401):
                return Server(proc, url, root / "log", root / "data")
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            raise RuntimeError((root / "log").read_text())
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError("docker-registry did not start")


@pytest.fixture
def tool_env(tmp_path):
    """The environment for the real clients: a HOME and DOCKER_CONFIG of the test's own, so
    no tool reads the machine's logins, and no WHARF_ settings."""
    h = tmp_path / "home"
    h.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env.update({"HOME": str(h), "DOCKER_CONFIG": str(h / ".docker"),
                "XDG_CONFIG_HOME": str(h / ".config")})
    return env


@pytest.fixture(params=["wharf", "distribution2", "distribution3"])
def peer_registry(request, tmp_path):
    """Wharf, then Distribution 2.8 and 3, each in turn; `.kind` says which."""
    if request.param == "wharf":
        s = start_wharf(tmp_path / "data")
    else:
        s = start_distribution(tmp_path, version=int(request.param[-1]))
    s.kind = request.param
    yield s
    s.stop()


@pytest.fixture
def distribution(tmp_path):
    s = start_distribution(tmp_path)
    yield s
    s.stop()


def error_code(resp):
    """The first error code of a spec-conformant error body."""
    body = resp.json()
    assert isinstance(body.get("errors"), list) and body["errors"], body
    return body["errors"][0]["code"]


def assert_config_refused(tmp_path, cases):
    """Each (config text, phrase): `wharf serve` refuses it with one line naming the phrase."""
    cfg = tmp_path / "refused.toml"
    for text, says in cases:
        cfg.write_text(text)
        r = subprocess.run([str(WHARF), "serve", "--data-dir", str(tmp_path / "d"), "--config",
                            str(cfg), "--listen", "127.0.0.1:0"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode != 0 and says in r.stderr, (text, r.stderr)
        assert r.stderr.strip().count("\n") == 0, r.stderr
