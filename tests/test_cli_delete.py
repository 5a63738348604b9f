"""Deleting a tag is not deleting a manifest: `wharf untag` removes tags and nothing else,
through the registry's tag DELETE (Wharf, Distribution 3) or says that the registry has none
(Distribution 2.8); `manifest delete` of a tagged manifest names the tags and wants --force."""

import json
import os
import subprocess

import pytest

from conftest import WHARF


@pytest.fixture
def registry(peer_registry):
    return peer_registry


def wharf(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker")
    return subprocess.run([str(WHARF), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, stdin=subprocess.DEVNULL)


def tags(tmp_path, repo):
    p = wharf(tmp_path, "repo", "tags", repo, "--format", "json")
    assert p.returncode == 0, p.stderr
    return sorted(json.loads(p.stdout)["tags"])


def test_untag_keeps_the_manifest(registry, tmp_path):
    (tmp_path / "f.txt").write_text("kept\n")
    repo = f"{registry.host}/team/app"
    p = wharf(tmp_path, "push", f"{repo}:v1,rc1,rc2", tmp_path / "f.txt")
    assert p.returncode == 0, p.stderr
    digest = p.stdout.split("Digest: ")[1].strip()
    p = wharf(tmp_path, "untag", f"{repo}:rc1", f"{repo}:rc2")
    if registry.kind == "distribution2":
        # no tag DELETE there: said in one line, and nothing changed
        assert p.returncode == 1
        assert p.stderr.startswith(f"wharf: error: {registry.host} cannot delete a tag alone "
                                   "(DELETE by tag answered "), p.stderr
        assert p.stderr.rstrip().endswith(f"{repo}:rc1 still points to its manifest")
        assert tags(tmp_path, repo) == ["rc1", "rc2", "v1"]
        return
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"Untagged {repo}:rc1\nUntagged {repo}:rc2\n"
    assert tags(tmp_path, repo) == ["v1"]
    # the manifest is still there, by digest and by its other tag
    for ref in (f"{repo}@{digest}", f"{repo}:v1"):
        p = wharf(tmp_path, "resolve", ref)
        assert p.returncode == 0 and p.stdout.strip() == digest, p.stderr
    # a tag that is not there is "not found" (exit 3); a digest is not a tag
    p = wharf(tmp_path, "untag", f"{repo}:rc1")
    assert p.returncode == 3, p.stderr
    p = wharf(tmp_path, "untag", f"{repo}@{digest}")
    assert p.returncode == 1 and "untag takes REPOSITORY:TAG" in p.stderr, p.stderr
    p = wharf(tmp_path, "untag", f"{repo}:v1", "--format", "json")
    assert p.returncode == 0 and json.loads(p.stdout) == {"untagged": [f"{repo}:v1"]}
    assert wharf(tmp_path, "resolve", f"{repo}@{digest}").returncode == 0


def test_manifest_delete_of_a_tagged_manifest_wants_force(registry, tmp_path):
    (tmp_path / "f.txt").write_text("doomed\n")
    repo = f"{registry.host}/team/app"
    p = wharf(tmp_path, "push", f"{repo}:v1,latest", tmp_path / "f.txt")
    digest = p.stdout.split("Digest: ")[1].strip()
    (tmp_path / "g.txt").write_text("other\n")
    assert wharf(tmp_path, "push", f"{repo}:v2", tmp_path / "g.txt").returncode == 0
    p = wharf(tmp_path, "manifest", "delete", f"{repo}@{digest}")
    assert p.returncode == 1
    assert p.stderr == (
        f"wharf: error: {repo}@{digest} is tagged latest, v1; deleting the manifest deletes "
        f"those tags too: use `wharf untag {repo}:latest` to remove a tag only, or --force to "
        "delete the manifest\n"), p.stderr
    assert tags(tmp_path, repo) == ["latest", "v1", "v2"]
    p = wharf(tmp_path, "manifest", "delete", "--force", f"{repo}:v1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"Deleted {repo}@{digest}"
    assert tags(tmp_path, repo) == ["v2"]
    assert wharf(tmp_path, "resolve", f"{repo}@{digest}").returncode == 3
    # an untagged manifest goes without --force (a new push: its created time differs)
    p = wharf(tmp_path, "push", f"{repo}:tmp", tmp_path / "f.txt")
    tmp_digest = p.stdout.split("Digest: ")[1].strip()
    if registry.kind != "distribution2":
        assert wharf(tmp_path, "untag", f"{repo}:tmp").returncode == 0
        p = wharf(tmp_path, "manifest", "delete", f"{repo}@{tmp_digest}")
        assert p.returncode == 0, p.stderr
