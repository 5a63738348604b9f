"""The Go tools our users run, built by tests/setup at pinned versions, against Wharf: each
writes what `wharf` (or another of them) reads back byte for byte, and CNCF Distribution 3
serves as a second reference peer. The wider cross-checks build on these."""

import hashlib
import json
import os
import subprocess

import pytest

from conftest import WHARF, go_tool, start_distribution, start_wharf


def run(cmd, cwd=None, env=None, check=True, input=None):
    full = dict(os.environ)
    full.update(env or {})
    r = subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=300,
                       input=input)
    if check:
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


def wharf(*args, cwd=None, env=None, check=True):
    return run([str(WHARF), *args], cwd=cwd, env=env, check=check)


@pytest.fixture
def registry(tmp_path):
    s = start_wharf(tmp_path / "data")
    yield s
    s.stop()


@pytest.fixture
def home(tool_env):
    return tool_env


def test_oras_cli_and_wharf_read_each_other(registry, tmp_path, home):
    oras, host = go_tool("oras"), registry.host
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("written by the oras CLI\n")
    run([oras, "push", "--plain-http", f"{host}/x/by-oras:v1", "notes.txt:text/plain"],
        cwd=src, env=home)
    out = tmp_path / "by-oras"
    wharf("pull", f"{host}/x/by-oras:v1", "-o", str(out), env=home)
    assert (out / "notes.txt").read_bytes() == (src / "notes.txt").read_bytes()
    # The other way, and the two agree on the manifest's digest.
    (src / "wharf.txt").write_text("written by wharf\n")
    wharf("push", f"{host}/x/by-wharf:v1", "wharf.txt", cwd=src, env=home)
    out = tmp_path / "by-wharf"
    run([oras, "pull", "--plain-http", f"{host}/x/by-wharf:v1", "-o", str(out)], env=home)
    assert (out / "wharf.txt").read_bytes() == (src / "wharf.txt").read_bytes()
    fetched = run([oras, "manifest", "fetch", "--plain-http", "--descriptor",
                   f"{host}/x/by-wharf:v1"], env=home)
    resolved = wharf("resolve", f"{host}/x/by-wharf:v1", env=home).stdout.strip()
    assert json.loads(fetched.stdout)["digest"] == resolved


def test_crane_reads_what_wharf_pushed(registry, tmp_path, home):
    crane, host = go_tool("crane"), registry.host
    digest, m = registry.push_image("x/img", "v1")
    assert run([crane, "digest", "--insecure", f"{host}/x/img:v1"],
               env=home).stdout.strip() == digest
    assert run([crane, "ls", "--insecure", f"{host}/x/img"], env=home).stdout.split() == ["v1"]
    raw = run([crane, "manifest", "--insecure", f"{host}/x/img:v1"], env=home).stdout
    assert hashlib.sha256(raw.encode()).hexdigest() == digest.split(":")[1]
    run([crane, "copy", "--insecure", f"{host}/x/img:v1", f"{host}/x/copied:v1"], env=home)
    assert wharf("resolve", f"{host}/x/copied:v1", env=home).stdout.strip() == digest


def test_regctl_copies_within_wharf(registry, home):
    regctl, host = go_tool("regctl"), registry.host
    digest, _ = registry.push_image("x/reg", "v1")
    run([regctl, "registry", "set", "--tls", "disabled", host], env=home)
    run([regctl, "image", "copy", f"{host}/x/reg:v1", f"{host}/x/reg-copy:v1"], env=home)
    assert wharf("resolve", f"{host}/x/reg-copy:v1", env=home).stdout.strip() == digest


def test_helm_pushes_and_pulls_a_chart_byte_for_byte(registry, tmp_path, home):
    helm, host = go_tool("helm"), registry.host
    run([helm, "create", "demo"], cwd=tmp_path, env=home)
    run([helm, "package", "demo"], cwd=tmp_path, env=home)
    chart = tmp_path / "demo-0.1.0.tgz"
    run([helm, "push", str(chart), f"oci://{host}/charts", "--plain-http"], env=home)
    out = tmp_path / "pulled"
    out.mkdir()
    run([helm, "pull", f"oci://{host}/charts/demo", "--version", "0.1.0", "--plain-http",
         "-d", str(out)], env=home)
    assert (out / "demo-0.1.0.tgz").read_bytes() == chart.read_bytes()


def test_cosign_signs_in_wharf_and_verifies(registry, tmp_path, home):
    cosign, host = go_tool("cosign"), registry.host
    digest, _ = registry.push_image("x/signed", "v1")
    env = dict(home, COSIGN_PASSWORD="")
    run([cosign, "generate-key-pair"], cwd=tmp_path, env=env)
    ref = f"{host}/x/signed@{digest}"
    flags = ["--allow-insecure-registry", "--allow-http-registry"]
    run([cosign, "sign", "--key", "cosign.key", "--tlog-upload=false", "-y", *flags, ref],
        cwd=tmp_path, env=env)
    # The signature is where cosign keeps it: the sha256-<hex>.sig tag.
    tags = wharf("repo", "tags", f"{host}/x/signed", env=home).stdout.split()
    assert f"sha256-{digest.split(':')[1]}.sig" in tags
    r = run([cosign, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", *flags, ref],
            cwd=tmp_path, env=env)
    assert json.loads(r.stdout)[0]["critical"]["image"]["docker-manifest-digest"] == digest


def test_wharf_copies_to_distribution_3_and_back(registry, tmp_path, home):
    dist = start_distribution(tmp_path, version=3)
    try:
        digest, _ = registry.push_image("x/peer", "v1")
        wharf("cp", f"{registry.host}/x/peer:v1", f"{dist.host}/x/peer:v1", env=home)
        assert wharf("resolve", f"{dist.host}/x/peer:v1", env=home).stdout.strip() == digest
        wharf("cp", f"{dist.host}/x/peer:v1", f"{registry.host}/x/back:v1", env=home)
        assert wharf("resolve", f"{registry.host}/x/back:v1",
                     env=home).stdout.strip() == digest
    finally:
        dist.stop()
