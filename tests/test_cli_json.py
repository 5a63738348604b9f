"""Output for scripts and for people: the `--format json` schema of docs/cli-json.md (camelCase
keys, every tag reported, backup and restore alike, errors as JSON), text that lists every
tag written, progress bars that fit the terminal, and help that never shows a secret."""

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from conftest import WHARF, start_wharf


@pytest.fixture
def registry(tmp_path):
    s = start_wharf(tmp_path / "data")
    yield s
    s.stop()


def wharf(tmp_path, *args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    e["DOCKER_CONFIG"] = str(tmp_path / "docker")
    e.update(env or {})
    return subprocess.run([str(WHARF), *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=120)


def keys(doc, path=""):
    """Every object key in `doc`, except those inside annotations (free-form by the spec)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield f"{path}.{k}", k
            if k not in ("annotations", "platform"):
                yield from keys(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from keys(v, f"{path}[{i}]")


def assert_camel(doc):
    bad = [p for p, k in keys(doc) if not re.fullmatch(r"[a-z][a-zA-Z0-9]*", k)]
    assert not bad, bad


def test_json_schema_of_each_command(registry, tmp_path):
    h = registry.host
    (tmp_path / "a.txt").write_text("a\n")
    run = lambda *a: wharf(tmp_path, *a, "--format", "json")  # noqa: E731
    # blobs in the manifest's order, the files as given and then the config, however the
    # concurrent uploads finish (the large one goes up in chunks, the others at once)
    names = ["z.bin", "big.bin", "m.txt"]
    for n in names:
        (tmp_path / n).write_bytes(os.urandom(12 << 20 if n == "big.bin" else 100))
    many = json.loads(run("push", f"{h}/j/many:v1", *(tmp_path / n for n in names)).stdout)
    titles = [b.get("annotations", {}).get("org.opencontainers.image.title")
              for b in many["blobs"]]
    assert titles == names + [None], titles
    assert many["blobs"][-1]["mediaType"] == "application/vnd.oci.empty.v1+json"
    p = run("push", f"{h}/j/app:v1,v2,latest", tmp_path / "a.txt")
    push = json.loads(p.stdout)
    assert_camel(push)
    assert push["tags"] == ["v1", "v2", "latest"] and push["reference"] == f"{h}/j/app:v1"
    assert {b["transfer"] for b in push["blobs"]} == {"uploaded"}
    assert all({"mediaType", "digest", "size"} <= b.keys() for b in push["blobs"])
    assert p.stderr == ""  # no progress with --format json
    pull = json.loads(run("pull", f"{h}/j/app:v1", "-o", tmp_path / "out").stdout)
    assert_camel(pull)
    assert pull["kind"] == "artifact"
    assert [w["path"] for w in pull["written"]] == [str(tmp_path / "out" / "a.txt")]
    # a directory reports where it was unpacked, not the output directory
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "x.yaml").write_text("x: 1\n")
    run("push", f"{h}/j/dir:v1", tmp_path / "a.txt", tmp_path / "deploy")
    pulled = json.loads(run("pull", f"{h}/j/dir:v1", "-o", tmp_path / "dout").stdout)
    assert [w["path"] for w in pulled["written"]] == [
        str(tmp_path / "dout" / "a.txt"), str(tmp_path / "dout" / "deploy")]
    assert (tmp_path / "dout" / "deploy" / "x.yaml").read_text() == "x: 1\n"
    cp = json.loads(run("cp", f"{h}/j/app:v1", f"{h}/k/app:c1,c2").stdout)
    assert_camel(cp)
    assert cp["tags"] == ["c1", "c2"] and cp["manifests"] == 1
    assert {b["transfer"] for b in cp["blobs"]} == {"mounted"}
    backup = json.loads(run("backup", f"{h}/j/app", "-o", tmp_path / "bk").stdout)
    restore = json.loads(run("restore", tmp_path / "bk", f"{h}/r/app").stdout)
    assert_camel(backup)
    assert backup.keys() == restore.keys() == {"references", "manifests", "referrers", "blobs"}
    assert sorted(backup["references"]) == ["latest", "v1", "v2"]
    assert sorted(r.split(":")[-1] for r in restore["references"]) == ["latest", "v1", "v2"]
    for args, field in [(("tag", f"{h}/j/app:v1", "t1", "t2"), "tagged"),
                        (("untag", f"{h}/j/app:t1"), "untagged"),
                        (("repo", "tags", f"{h}/j/app"), "tags"),
                        (("repo", "ls", h), "repositories"),
                        (("resolve", f"{h}/j/app:v1"), "mediaType"),
                        (("discover", f"{h}/j/app:v1"), "referrers")]:
        p = run(*args)
        assert p.returncode == 0, (args, p.stderr)
        doc = json.loads(p.stdout)
        assert_camel(doc)
        assert field in doc, (args, doc)
    assert json.loads(run("tag", f"{h}/j/app:v1", "t3", "t4").stdout)["tagged"] == [
        f"{h}/j/app:t3", f"{h}/j/app:t4"]


def test_json_of_chart_artifact_and_search_commands(registry, tmp_path):
    h = registry.host
    run = lambda *a: wharf(tmp_path, *a, "--format", "json")  # noqa: E731

    def doc(*args):
        p = run(*args)
        assert p.returncode in (0, 1), (args, p.stderr)
        d = json.loads(p.stdout)
        assert_camel(d)
        return d
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 1.0.0\n")
    assert doc("chart", "package", tmp_path / "c", "-d", tmp_path)["name"] == "c"
    pushed = doc("chart", "push", tmp_path / "c-1.0.0.tgz", f"oci://{h}/charts")
    assert pushed.keys() == {"reference", "digest", "name", "version", "config", "chart",
                             "provenance"}
    pulled = doc("chart", "pull", f"oci://{h}/charts/c", "-d", tmp_path / "p")
    assert pulled["written"] == [str(tmp_path / "p" / "c-1.0.0.tgz")]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.yaml").write_text("kind: X\n")
    bundle = ["--source", "s", "--revision", "r"]
    assert doc("artifact", "push", f"oci://{h}/b:v1", "--path", tmp_path / "b", *bundle)[
        "files"] == 1
    assert doc("artifact", "pull", f"oci://{h}/b:v1", "-o", tmp_path / "u")["revision"] == "r"
    assert doc("artifact", "tag", f"oci://{h}/b:v1", "--tag", "t")["tagged"] == [f"{h}/b:t"]
    assert [a["tag"] for a in doc("artifact", "list", f"oci://{h}/b")["artifacts"]] == [
        "t", "v1"]
    (tmp_path / "b" / "y.yaml").write_text("kind: Y\n")
    assert doc("artifact", "diff", f"oci://{h}/b:v1", "--path", tmp_path / "b")[
        "differences"] == [{"change": "added", "path": "y.yaml"}]
    found = doc("search", "c", "--registry", h)["results"]
    assert [(f["kind"], f["name"]) for f in found if f["kind"] == "helm-chart"] == [
        ("helm-chart", "c")]
    assert doc("chart", "search", "", "--registry", h)["charts"][0]["version"] == "1.0.0"


def test_text_lists_every_tag(registry, tmp_path):
    h = registry.host
    (tmp_path / "a.txt").write_text("a\n")
    p = wharf(tmp_path, "push", "-q", f"{h}/t/app:v1,v2", tmp_path / "a.txt")
    assert p.stdout.splitlines()[:2] == [f"Pushed {h}/t/app:v1", f"Pushed {h}/t/app:v2"]
    p = wharf(tmp_path, "cp", "-q", f"{h}/t/app:v1", f"{h}/u/app:x,y")
    assert p.stdout.splitlines()[:2] == [f"Copied {h}/t/app:v1 -> {h}/u/app:x",
                                         f"Tagged {h}/u/app:y"], p.stdout


def test_errors_are_json_with_format_json(registry, tmp_path):
    p = wharf(tmp_path, "resolve", f"{registry.host}/nope/app:v1", "--format", "json")
    assert p.returncode == 3 and p.stderr == ""
    err = json.loads(p.stdout)["error"]
    assert err["exitCode"] == 3 and "not found" in err["message"]
    p = wharf(tmp_path, "resolve", "127.0.0.1:1/x/y:v1", "--format", "json")
    assert p.returncode == 6
    assert json.loads(p.stdout) == {"error": {
        "message": "cannot reach 127.0.0.1:1: connection refused", "exitCode": 6}}
    # a file that is not there: the system's words, without Rust's "(os error 2)"
    p = wharf(tmp_path, "push", f"{registry.host}/j/x:v1", tmp_path / "missing.txt")
    assert p.returncode == 1
    assert p.stderr.strip() == f"wharf: error: {tmp_path / 'missing.txt'}: No such file or directory"
    # the operator commands fail in the same shape
    (tmp_path / "bad.toml").write_text("no_such_key = 1\n")
    for args in (["scrub"], ["gc", "--dry-run"], ["admin", "usage"]):
        p = wharf(tmp_path, *args, "--config", tmp_path / "bad.toml", "--format", "json")
        assert p.returncode == 1 and p.stderr == "", (args, p.stderr)
        err = json.loads(p.stdout)["error"]
        assert err["exitCode"] == 1 and "no_such_key" in err["message"], (args, err)
        p = wharf(tmp_path, *args, "--config", tmp_path / "bad.toml")
        assert p.returncode == 1 and p.stdout == "", args
        assert p.stderr.startswith("wharf: error: ") and "no_such_key" in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def run_in_terminal(args, cols, env, timeout=60):
    """Runs wharf with stderr on a pseudo-terminal `cols` wide; returns what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    p = subprocess.Popen([str(WHARF), *map(str, args)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=10)
    os.close(master)
    assert p.returncode == 0, out
    return out.decode(errors="replace")


@pytest.mark.parametrize("cols", [80, 60])
def test_progress_fits_the_terminal(registry, tmp_path, cols):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker")
    big = tmp_path / "a-file-with-a-rather-long-name-that-will-not-fit-anywhere.bin"
    big.write_bytes(os.urandom(24 << 20))
    drawn = run_in_terminal(["push", "--chunk-size", "1", f"{registry.host}/p/app:v1", big],
                            cols, env)
    # indicatif draws its lines back to back, each padded to the terminal's width: cut each
    # drawing (between control sequences) every `cols` characters, and every piece must
    # start a line (a right-aligned word in 9 columns: "    Total", "Uploaded ", blank),
    # never the spill of a line that was too long ("MiB/s", "] 0 B", ...)
    pieces = re.split(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n", drawn)
    lines = [seg[i:i + cols] for seg in pieces for i in range(0, len(seg), cols)]
    lines = [line for line in lines if line.strip()]
    assert lines, drawn
    spill = [line for line in lines if not re.fullmatch(r" *[A-Za-z]* *", line[:9])]
    assert not spill, spill
    assert any("Total" in line for line in lines)
    # the empty config is named as such
    assert any("config (empty)" in line for line in lines), lines


def test_help_never_prints_a_secret(tmp_path):
    env = {"WHARF_PASSWORD": "hunter2-secret", "WHARF_FROM_PASSWORD": "from-secret",
           "WHARF_TO_PASSWORD": "to-secret",
           "WHARF_METADATA_URL": "postgres://u:db-secret@h/db"}
    for cmd in (["serve"], ["push"], ["cp"], ["restore"], ["admin", "api-key", "create"]):
        p = wharf(tmp_path, *cmd, "--help", env=env)
        assert p.returncode == 0, p.stderr
        for value in env.values():
            assert value not in p.stdout, (cmd, value)
        assert "db-secret" not in p.stdout and "hunter2" not in p.stdout, (cmd, p.stdout)
