"""Real clients against Wharf: skopeo, buildah and podman (vfs storage), and the oras Python
SDK. Each round trip compares digests or bytes, not just exit codes."""

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import oras.client
import oras.oci
import oras.provider
import pytest

from conftest import OCI_MANIFEST, sha256
from oci_layout import write_layout


def run(*cmd, cwd=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300,
                       cwd=cwd)
    assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture
def skopeo(tmp_path):
    exe = shutil.which("skopeo")
    if not exe:
        pytest.fail("skopeo is not installed: run tests/setup")
    policy = tmp_path / "policy.json"
    policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')

    def go(verb, *args):
        flags = {"copy": ["--src-tls-verify=false", "--dest-tls-verify=false"],
                 "inspect": ["--tls-verify=false"], "list-tags": ["--tls-verify=false"],
                 "delete": ["--tls-verify=false"]}[verb]
        return run(exe, "--policy", policy, verb, *flags, *args)
    return go


def layout_manifest_digest(layout: Path, tag: str) -> str:
    for m in json.loads((layout / "index.json").read_text())["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m["digest"]
    raise KeyError(tag)


def blob_files(layout: Path) -> set:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


def test_skopeo_multilayer_round_trip(wharf, skopeo, tmp_path):
    src = tmp_path / "src"
    digest = write_layout(src, "v1", layers=3)
    skopeo("copy", f"oci:{src}:v1", f"docker://{wharf.host}/sk/multi:v1")
    r = wharf("GET", "/v2/sk/multi/manifests/v1")
    assert r.headers["Docker-Content-Digest"] == digest
    assert sha256(r.content) == digest

    out = tmp_path / "out"
    skopeo("copy", f"docker://{wharf.host}/sk/multi:v1", f"oci:{out}:v1")
    assert layout_manifest_digest(out, "v1") == digest
    assert blob_files(out) == blob_files(src)

    info = json.loads(skopeo("inspect", f"docker://{wharf.host}/sk/multi:v1"))
    assert info["Digest"] == digest and info["Architecture"] == "amd64"
    assert len(info["Layers"]) == 3

    skopeo("copy", f"docker://{wharf.host}/sk/multi:v1", f"docker://{wharf.host}/sk/multi:v2")
    tags = json.loads(skopeo("list-tags", f"docker://{wharf.host}/sk/multi"))
    assert tags == {"Repository": f"{wharf.host}/sk/multi", "Tags": ["v1", "v2"]}

    skopeo("delete", f"docker://{wharf.host}/sk/multi:v1")
    assert wharf("GET", f"/v2/sk/multi/manifests/{digest}").status_code == 404
    assert json.loads(skopeo("list-tags", f"docker://{wharf.host}/sk/multi"))["Tags"] == []


def test_skopeo_two_platform_index_round_trip(wharf, skopeo, tmp_path):
    src = tmp_path / "src"
    digest = write_layout(src, "multi", archs=("amd64", "arm64"), layers=2)
    skopeo("copy", "--all", f"oci:{src}:multi", f"docker://{wharf.host}/sk/index:multi")
    r = wharf("GET", "/v2/sk/index:multi".replace(":", "/manifests/"))
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    out = tmp_path / "out"
    skopeo("copy", "--all", f"docker://{wharf.host}/sk/index:multi", f"oci:{out}:multi")
    assert layout_manifest_digest(out, "multi") == digest
    assert blob_files(out) == blob_files(src)
    arm = json.loads(skopeo("inspect", "--override-arch", "arm64",
                            f"docker://{wharf.host}/sk/index:multi"))
    assert arm["Architecture"] == "arm64"


def test_skopeo_same_digests_as_distribution(wharf, distribution, skopeo, tmp_path):
    """The reference peer and Wharf store the same image under the same digests."""
    src = tmp_path / "src"
    digest = write_layout(src, "p", archs=("amd64", "arm64"), layers=2)
    for reg in (wharf, distribution):
        skopeo("copy", "--all", f"oci:{src}:p", f"docker://{reg.host}/peer/img:p")
    a = wharf("GET", "/v2/peer/img/manifests/p")
    b = distribution("GET", "/v2/peer/img/manifests/p",
                     headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    assert a.content == b.content
    assert a.headers["Docker-Content-Digest"] == b.headers["Docker-Content-Digest"] == digest
    # and copying registry to registry in both directions keeps the digest
    skopeo("copy", "--all", f"docker://{distribution.host}/peer/img:p",
           f"docker://{wharf.host}/peer/from-dist:p")
    skopeo("copy", "--all", f"docker://{wharf.host}/peer/img:p",
           f"docker://{distribution.host}/peer/from-wharf:p")
    assert wharf("HEAD", "/v2/peer/from-dist/manifests/p").headers["Docker-Content-Digest"] \
        == digest


@pytest.fixture
def containers_storage(tmp_path):
    for tool in ("buildah", "podman"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: run tests/setup")
    # podman refuses a runroot path of more than 50 characters, so it can't live in tmp_path
    runroot = tempfile.mkdtemp(prefix="wharf-run-", dir="/tmp")
    yield ["--root", tmp_path / "containers", "--runroot", runroot, "--storage-driver", "vfs"]
    shutil.rmtree(runroot, ignore_errors=True)


def test_buildah_push_podman_pull(wharf, containers_storage, tmp_path):
    s = containers_storage
    (tmp_path / "hello.txt").write_text("hello from buildah\n")
    c = run("buildah", *s, "from", "scratch").strip()
    run("buildah", *s, "copy", c, tmp_path / "hello.txt", "/hello.txt")
    run("buildah", *s, "config", "--arch", "amd64", "--os", "linux", c)
    image_id = run("buildah", *s, "commit", "-q", c, "built").strip()
    run("buildah", *s, "push", "--tls-verify=false", "built",
        f"docker://{wharf.host}/bp/built:v1")
    r = wharf("GET", "/v2/bp/built/manifests/v1")
    assert r.status_code == 200
    m = r.json()
    for d in [m["config"]] + m["layers"]:
        assert sha256(wharf("GET", f"/v2/bp/built/blobs/{d['digest']}").content) == d["digest"]

    run("podman", *s, "rmi", "-a", "-f")
    run("podman", *s, "pull", "--tls-verify=false", f"{wharf.host}/bp/built:v1")
    out = run("podman", *s, "images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}",
              "--no-trunc")
    assert f"{wharf.host}/bp/built:v1" in out
    assert image_id in out.replace("sha256:", "")


def oras_client(server):
    return oras.client.OrasClient(hostname=server.host, insecure=True)


def test_oras_push_pull_custom_media_types(wharf, tmp_path, monkeypatch):
    client = oras_client(wharf)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # oras titles files by the path given, relative to here
    (work / "model.bin").write_bytes(hashlib.sha512(b"m").digest() * 4000)
    (work / "notes.txt").write_text("artifact notes\n")
    (work / "config.json").write_text('{"kind":"example"}')
    target = f"{wharf.host}/oras/artifact:v1"
    r = client.push(target=target,
                    files=["model.bin:application/vnd.example.model.v1",
                           "notes.txt:text/plain"],
                    manifest_config="config.json:application/vnd.example.config.v1+json",
                    manifest_annotations={"org.example.purpose": "test"},
                    disable_path_validation=True, do_chunked=False)
    assert r.status_code == 201
    m = wharf("GET", "/v2/oras/artifact/manifests/v1").json()
    assert m["config"]["mediaType"] == "application/vnd.example.config.v1+json"
    assert [l["mediaType"] for l in m["layers"]] == ["application/vnd.example.model.v1",
                                                     "text/plain"]
    assert m["annotations"]["org.example.purpose"] == "test"

    out = tmp_path / "out"
    files = client.pull(target=target, outdir=str(out))
    got = {Path(f).name: Path(f).read_bytes() for f in files}
    assert got == {"model.bin": (work / "model.bin").read_bytes(),
                   "notes.txt": b"artifact notes\n"}


def test_oras_chunked_push(wharf, tmp_path):
    client = oras_client(wharf)
    big = tmp_path / "big.bin"
    big.write_bytes(hashlib.sha256(b"c").digest() * (3 * 1024 * 1024 // 32 + 7))
    target = f"{wharf.host}/oras/chunked:v1"
    r = client.push(target=target, files=[f"{big}:application/octet-stream"],
                    do_chunked=True, chunk_size=1024 * 1024, disable_path_validation=True)
    assert r.status_code == 201
    files = client.pull(target=target, outdir=str(tmp_path / "out"))
    assert Path(files[0]).read_bytes() == big.read_bytes()


def test_oras_artifact_type_and_subject(wharf, tmp_path):
    """The SDK's push() cannot set artifactType, so build the manifest with its lower-level
    calls, as oras users do for custom artifacts."""
    subject_digest, subject = wharf.push_image("oras/subject", "v1")
    reg = oras.provider.Registry(hostname=wharf.host, insecure=True)
    container = reg.get_container(f"{wharf.host}/oras/subject:sbom")
    payload = tmp_path / "sbom.json"
    payload.write_text('{"spdxVersion":"SPDX-2.3"}')
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    layer = oras.oci.NewLayer(str(payload), "application/spdx+json", is_dir=False)
    config = oras.oci.NewLayer(str(empty), "application/vnd.oci.empty.v1+json", is_dir=False)
    for path, desc in ((payload, layer), (empty, config)):
        # 200: the SDK found the blob already present (HEAD) and skipped the upload
        assert reg.upload_blob(str(path), container, desc).status_code in (200, 201, 202)
    subject_raw = wharf("GET", f"/v2/oras/subject/manifests/{subject_digest}").content
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.example.sbom",
                "config": config, "layers": [layer],
                "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest,
                            "size": len(subject_raw)}}
    r = reg.upload_manifest(manifest, container)
    assert r.status_code == 201 and r.headers["OCI-Subject"] == subject_digest
    refs = wharf("GET", f"/v2/oras/subject/referrers/{subject_digest}",
                 params={"artifactType": "application/vnd.example.sbom"}).json()["manifests"]
    assert len(refs) == 1 and refs[0]["artifactType"] == "application/vnd.example.sbom"
    pulled = reg.get_manifest(f"{wharf.host}/oras/subject:sbom")
    assert pulled["artifactType"] == "application/vnd.example.sbom"
    out = tmp_path / "out"
    files = reg.pull(target=f"{wharf.host}/oras/subject:sbom", outdir=str(out))
    assert Path(files[0]).read_text() == '{"spdxVersion":"SPDX-2.3"}'
