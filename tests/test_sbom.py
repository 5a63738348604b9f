"""SBOMs beside images: `wharf sbom attach` (SPDX JSON and CycloneDX JSON, the media type
detected from the content), `sbom list` and `sbom get`, read by the oras CLI (`oras
discover`) and reading what oras wrote, including the `oras push REPO:sbom
./sbom.spdx:application/spdx+json` pattern; on Wharf and Distribution 2.8 and 3."""

import json
import subprocess

import pytest

from conftest import WHARF, go_tool

SPDX = {"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": "app", "documentNamespace": "https://example.com/app", "packages": []}
BOM = {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": []}


@pytest.fixture
def registry(peer_registry):
    return peer_registry


def run(env, *cmd, cwd=None, check=True):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                       timeout=120)
    if check:
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


def test_attach_list_get_and_oras(registry, tool_env, tmp_path):
    env, h = tool_env, registry.host
    (tmp_path / "app.txt").write_text("app")
    run(env, WHARF, "push", f"{h}/s/app:v1", "app.txt", cwd=tmp_path)
    (tmp_path / "sbom.spdx.json").write_text(json.dumps(SPDX, indent=1))
    (tmp_path / "bom.json").write_text(json.dumps(BOM))
    ref = f"{h}/s/app:v1"
    p = run(env, WHARF, "sbom", "attach", ref, "sbom.spdx.json", cwd=tmp_path)
    assert p.stdout.decode().startswith("Attached application/spdx+json to "), p.stdout
    run(env, WHARF, "sbom", "attach", ref, "bom.json", cwd=tmp_path)
    # oras sees both, with the document's media type as the artifactType
    d = json.loads(run(env, go_tool("oras"), "discover", "--plain-http", "--format", "json",
                       ref).stdout)
    assert sorted(m["artifactType"] for m in d["referrers"]) == [
        "application/spdx+json", "application/vnd.cyclonedx+json"]
    listed = json.loads(run(env, WHARF, "sbom", "list", "--format", "json", ref).stdout)
    assert sorted(s["mediaType"] for s in listed["sboms"]) == [
        "application/spdx+json", "application/vnd.cyclonedx+json"]
    # get, by format, byte for byte
    got = run(env, WHARF, "sbom", "get", "--format", "spdx", ref).stdout
    assert got == (tmp_path / "sbom.spdx.json").read_bytes()
    run(env, WHARF, "sbom", "get", "--format", "cyclonedx", ref, "-o", tmp_path / "out.json")
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "bom.json").read_bytes()
    # oras pulls what sbom attach wrote
    ref_digest = [m["digest"] for m in d["referrers"]
                  if m["artifactType"] == "application/spdx+json"][0]
    run(env, go_tool("oras"), "pull", "--plain-http", f"{h}/s/app@{ref_digest}", "-o",
        tmp_path / "pulled")
    assert (tmp_path / "pulled" / "sbom.spdx.json").read_bytes() == \
        (tmp_path / "sbom.spdx.json").read_bytes()
    # the seed's pattern: an SBOM pushed by oras under a tag of its own
    run(env, go_tool("oras"), "push", "--plain-http", f"{h}/s/app:sbom",
        "sbom.spdx.json:application/spdx+json", cwd=tmp_path)
    got = run(env, WHARF, "sbom", "get", f"{h}/s/app:sbom").stdout
    assert got == (tmp_path / "sbom.spdx.json").read_bytes()
    # and an SBOM attached by oras is listed by wharf (annotated: within the same second,
    # oras would write the very manifest `sbom attach` wrote, digest and all)
    run(env, go_tool("oras"), "attach", "--plain-http", "--artifact-type",
        "application/spdx+json", "--annotation", "by=oras", f"{h}/s/app:v1",
        "sbom.spdx.json:application/spdx+json", cwd=tmp_path)
    listed = json.loads(run(env, WHARF, "sbom", "list", "--format", "json", ref).stdout)
    assert len(listed["sboms"]) == 3


def test_sbom_errors(registry, tool_env, tmp_path):
    env, h = tool_env, registry.host
    (tmp_path / "app.txt").write_text("app")
    run(env, WHARF, "push", f"{h}/s/app:v1", "app.txt", cwd=tmp_path)
    (tmp_path / "notes.json").write_text('{"hello": "world"}')
    p = run(env, WHARF, "sbom", "attach", f"{h}/s/app:v1", "notes.json", cwd=tmp_path,
            check=False)
    assert p.returncode == 1 and b"neither SPDX JSON" in p.stderr and b"--media-type" in p.stderr
    p = run(env, WHARF, "sbom", "get", f"{h}/s/app:v1", check=False)
    assert p.returncode == 3 and b"an SBOM of" in p.stderr, p.stderr
    p = run(env, WHARF, "sbom", "get", "--format", "xml", f"{h}/s/app:v1", check=False)
    assert p.returncode == 1 and b"unknown SBOM format" in p.stderr
    # the media type can be given for a document that is not detected
    run(env, WHARF, "sbom", "attach", "--media-type", "application/spdx+json",
        f"{h}/s/app:v1", "notes.json", cwd=tmp_path)
    assert run(env, WHARF, "sbom", "get", f"{h}/s/app:v1").stdout == b'{"hello": "world"}'
