"""Cross-checks with the real Go clients, against Wharf and against CNCF Distribution 2.8 and
3, in both directions, bytes and digests compared: what `wharf` writes, the oras CLI, crane
and regctl read; what they write, `wharf` reads; and where wharf and oras both write the same
files, the manifests agree field by field (titles, media types, directory archives, the
empty config, artifactType)."""

import json
import os
import subprocess

import pytest

from conftest import WHARF, go_tool


@pytest.fixture
def registry(peer_registry):
    return peer_registry


@pytest.fixture
def env(tool_env):
    return tool_env


def run(env, *cmd, cwd=None):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r.stdout


def wharf(env, *args, cwd=None):
    return run(env, WHARF, *args, cwd=cwd)


def oras(env, *args, cwd=None):
    return run(env, go_tool("oras"), *args, "--plain-http", cwd=cwd)


def files(root):
    return {os.path.relpath(os.path.join(d, n), root): open(os.path.join(d, n), "rb").read()
            for d, _, names in os.walk(root) for n in names}


@pytest.fixture
def content(tmp_path):
    """Files and a directory, the same for both tools."""
    src = tmp_path / "src"
    (src / "site" / "css").mkdir(parents=True)
    (src / "notes.txt").write_text("release notes\n")
    (src / "model.bin").write_bytes(os.urandom(200_000))
    (src / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (src / "site" / "css" / "a.css").write_text("body{}\n")
    return src


def manifest(env, ref):
    return json.loads(oras(env, "manifest", "fetch", ref))


def test_wharf_and_oras_write_the_same_artifact(registry, env, content, tmp_path):
    h = registry.host
    wharf(env, "push", f"{h}/x/by-wharf:v1", "notes.txt:text/plain", "model.bin", "site",
          cwd=content)
    oras(env, "push", f"{h}/x/by-oras:v1", "notes.txt:text/plain", "model.bin", "site",
         cwd=content)
    mw, mo = manifest(env, f"{h}/x/by-wharf:v1"), manifest(env, f"{h}/x/by-oras:v1")
    for key in ("schemaVersion", "mediaType", "artifactType", "config"):
        assert mw[key] == mo[key], key
    assert [(la["mediaType"], la["annotations"]["org.opencontainers.image.title"])
            for la in mw["layers"]] == [
        (lo["mediaType"], lo["annotations"]["org.opencontainers.image.title"])
        for lo in mo["layers"]]
    # plain files: the same blobs; the directory: the same annotations (the tar's bytes
    # carry times, so its digest differs)
    assert [la["digest"] for la in mw["layers"][:2]] == [lo["digest"] for lo in mo["layers"][:2]]
    assert mw["layers"][2]["annotations"].keys() == mo["layers"][2]["annotations"].keys()
    assert mw["annotations"].keys() == mo["annotations"].keys()  # created
    # each tool pulls the other's, byte for byte
    oras(env, "pull", f"{h}/x/by-wharf:v1", "-o", tmp_path / "o")
    wharf(env, "pull", f"{h}/x/by-oras:v1", "-o", tmp_path / "w")
    assert files(tmp_path / "o") == files(tmp_path / "w") == files(content)
    # and agree on digests, tags and the raw manifest
    digest = wharf(env, "resolve", f"{h}/x/by-oras:v1").strip()
    assert json.loads(oras(env, "manifest", "fetch", "--descriptor",
                           f"{h}/x/by-oras:v1"))["digest"] == digest
    raw = subprocess.run([str(WHARF), "manifest", "fetch", f"{h}/x/by-oras:v1"], env=env,
                         capture_output=True, check=True).stdout
    oras_raw = subprocess.run([go_tool("oras"), "manifest", "fetch", "--plain-http",
                               f"{h}/x/by-oras:v1"], env=env, capture_output=True,
                              check=True).stdout
    assert raw == oras_raw
    oras(env, "tag", f"{h}/x/by-wharf:v1", "o1")
    wharf(env, "tag", f"{h}/x/by-wharf:v1", "w1")
    assert sorted(oras(env, "repo", "tags", f"{h}/x/by-wharf").split()) == \
        sorted(json.loads(wharf(env, "repo", "tags", f"{h}/x/by-wharf", "--format",
                                "json"))["tags"]) == ["o1", "v1", "w1"]


def test_referrers_both_ways_and_recursive_copies(registry, env, content, tmp_path):
    h = registry.host
    wharf(env, "push", f"{h}/r/app:v1", "notes.txt", cwd=content)
    subject = f"{h}/r/app:v1"
    wharf(env, "attach", "--artifact-type", "application/spdx+json", subject, "model.bin",
          cwd=content)
    oras(env, "attach", "--artifact-type", "application/vnd.example.sig", subject,
         "notes.txt", cwd=content)
    seen_by_oras = json.loads(oras(env, "discover", "--format", "json", subject))
    types_oras = sorted(m["artifactType"] for m in seen_by_oras["referrers"])
    seen_by_wharf = json.loads(wharf(env, "discover", "--format", "json", subject))
    types_wharf = sorted(m["artifactType"] for m in seen_by_wharf["referrers"])
    assert types_oras == types_wharf == ["application/spdx+json", "application/vnd.example.sig"]
    assert sorted(m["digest"] for m in seen_by_oras["referrers"]) == \
        sorted(m["digest"] for m in seen_by_wharf["referrers"])
    # cp -r by each tool carries both referrers
    run(env, go_tool("oras"), "cp", "-r", "--from-plain-http", "--to-plain-http", subject,
        f"{h}/r/by-oras:v1")
    wharf(env, "cp", "-r", subject, f"{h}/r/by-wharf:v1")
    for copy in ("by-oras", "by-wharf"):
        d = json.loads(oras(env, "discover", "--format", "json", f"{h}/r/{copy}:v1"))
        assert sorted(m["artifactType"] for m in d["referrers"]) == types_oras, copy


def test_backup_and_restore_across_tools(registry, env, content, tmp_path):
    h = registry.host
    wharf(env, "push", f"{h}/b/app:v1,v2", "notes.txt", "site", cwd=content)
    wharf(env, "attach", "--artifact-type", "application/spdx+json", f"{h}/b/app:v1",
          "model.bin", cwd=content)
    digest = wharf(env, "resolve", f"{h}/b/app:v1").strip()
    # wharf's backup, restored by oras; oras's backup, restored by wharf
    wharf(env, "backup", f"{h}/b/app", "-o", tmp_path / "wharf.tar")
    oras(env, "restore", "--input", tmp_path / "wharf.tar", f"{h}/b/by-oras")
    run(env, go_tool("oras"), "backup", "--plain-http", "--include-referrers", "--output",
        tmp_path / "oras-layout", f"{h}/b/app:v1,v2")
    wharf(env, "restore", tmp_path / "oras-layout", f"{h}/b/by-wharf")
    for repo in ("by-oras", "by-wharf"):
        for tag in ("v1", "v2"):
            assert wharf(env, "resolve", f"{h}/b/{repo}:{tag}").strip() == digest, (repo, tag)
        d = json.loads(wharf(env, "discover", "--format", "json", f"{h}/b/{repo}:v1"))
        assert [m["artifactType"] for m in d["referrers"]] == ["application/spdx+json"], repo
    wharf(env, "pull", f"{h}/b/by-oras:v2", "-o", tmp_path / "out")
    assert files(tmp_path / "out") == {k: v for k, v in files(content).items()
                                       if k != "model.bin"}


def test_crane_and_regctl_on_what_wharf_pushed_and_back(registry, env, content, tmp_path):
    h = registry.host
    crane, regctl = go_tool("crane"), go_tool("regctl")
    wharf(env, "push", f"{h}/c/app:v1", "notes.txt", "model.bin", cwd=content)
    digest = wharf(env, "resolve", f"{h}/c/app:v1").strip()
    assert run(env, crane, "digest", "--insecure", f"{h}/c/app:v1").strip() == digest
    assert run(env, crane, "ls", "--insecure", f"{h}/c/app").split() == ["v1"]
    raw = subprocess.run([crane, "manifest", "--insecure", f"{h}/c/app:v1"], env=env,
                         capture_output=True, check=True).stdout
    assert raw == subprocess.run([str(WHARF), "manifest", "fetch", f"{h}/c/app:v1"], env=env,
                                 capture_output=True, check=True).stdout
    layer = json.loads(raw)["layers"][1]
    blob = subprocess.run([crane, "blob", "--insecure", f"{h}/c/app@{layer['digest']}"],
                          env=env, capture_output=True, check=True).stdout
    assert blob == (content / "model.bin").read_bytes()
    # crane copy and regctl copy of wharf's artifact; wharf reads both
    run(env, crane, "copy", "--insecure", f"{h}/c/app:v1", f"{h}/c/by-crane:v1")
    run(env, regctl, "registry", "set", "--tls", "disabled", h)
    run(env, regctl, "image", "copy", f"{h}/c/app:v1", f"{h}/c/by-regctl:v1")
    for copy in ("by-crane", "by-regctl"):
        assert wharf(env, "resolve", f"{h}/c/{copy}:v1").strip() == digest
        wharf(env, "pull", f"{h}/c/{copy}:v1", "-o", tmp_path / copy)
        assert files(tmp_path / copy) == {k: v for k, v in files(content).items()
                                          if k in ("notes.txt", "model.bin")}
    # regctl lists what wharf attached; wharf sees what regctl attached
    wharf(env, "attach", "--artifact-type", "application/spdx+json", f"{h}/c/app:v1",
          "notes.txt", cwd=content)
    listed = json.loads(run(env, regctl, "artifact", "list", "--format", "body",
                            f"{h}/c/app:v1"))
    assert [d["artifactType"] for d in listed["manifests"]] == ["application/spdx+json"]
    run(env, regctl, "artifact", "put", "--subject", f"{h}/c/app:v1", "--artifact-type",
        "application/vnd.example.regctl", "-f", content / "notes.txt")
    d = json.loads(wharf(env, "discover", "--format", "json", f"{h}/c/app:v1"))
    assert sorted(m["artifactType"] for m in d["referrers"]) == [
        "application/spdx+json", "application/vnd.example.regctl"]
