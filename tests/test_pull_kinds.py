"""`wharf pull` of what is not a titled artifact: a container image (its root filesystem with
--unpack, whiteouts applied), an index (a platform picked, or its platforms listed), a chart
pushed by the real helm (written as helm pull writes it), a bundle pushed by the real flux
(unpacked as flux pull does), and layers without names (an error that says what to run).
Each pull that writes nothing exits non-zero."""

import gzip
import io
import json
import os
import subprocess
import tarfile

from conftest import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, WHARF, go_tool
from test_go_clients import home, registry  # noqa: F401  (the fixtures)




def wharf(home, *args):
    env = {k: v for k, v in home.items() if not k.startswith("WHARF_")}
    return subprocess.run([str(WHARF), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def tar_gz(entries):
    """A gzip tar layer: (path, bytes) files, (path, None) directories, (path, '->target')
    symlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for path, data in entries:
            info = tarfile.TarInfo(path)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data[2:]
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def push_image(registry, repo, ref, layers, arch="amd64"):
    config = json.dumps({"architecture": arch, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd = registry.push_blob(repo, config)
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(config)},
         "layers": [{"mediaType": OCI_LAYER, "digest": registry.push_blob(repo, layer),
                     "size": len(layer)} for layer in layers]}
    raw = json.dumps(m).encode()
    return registry.push_manifest(repo, ref, raw), len(raw)


def files(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            out[rel] = ("-> " + os.readlink(p)) if os.path.islink(p) else open(p, "rb").read()
    return out


BASE = tar_gz([("./etc/", None), ("./etc/keep", b"1\n"), ("./etc/gone", b"2\n"),
               ("./var/cache/", None), ("./var/cache/a", b"3\n"), ("./usr/bin/", None),
               ("./usr/bin/tool", b"#!/bin/sh\n"), ("./bin", "->usr/bin")])
TOP = tar_gz([("etc/.wh.gone", b""), ("var/cache/.wh..wh..opq", b""),
              ("var/cache/b", b"4\n"), ("etc/keep", b"replaced\n")])


def test_image_needs_unpack_and_then_writes_its_root_filesystem(registry, tmp_path, home):
    push_image(registry, "img/app", "v1", [BASE, TOP])
    ref = f"{registry.host}/img/app:v1"
    p = wharf(home, "pull", ref, "-o", tmp_path / "out")
    assert p.returncode == 1
    assert "is a container image (2 layers) with no file names to write: pass --unpack" \
        in p.stderr, p.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    p = wharf(home, "pull", "--unpack", ref, "-o", tmp_path / "root")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"Unpacked 2 layers into {tmp_path / 'root'}\n"), p.stdout
    assert files(tmp_path / "root") == {
        "etc/keep": b"replaced\n", "var/cache/b": b"4\n", "usr/bin/tool": b"#!/bin/sh\n",
        "bin": "-> usr/bin"}


def test_index_platforms(registry, tmp_path, home):
    amd, amd_size = push_image(registry, "img/multi", "amd64",
                               [tar_gz([("arch", b"amd64\n")])])
    arm, arm_size = push_image(registry, "img/multi", "arm64",
                               [tar_gz([("arch", b"arm64\n")])], arch="arm64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_size,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": arm, "size": arm_size,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}
    registry.push_manifest("img/multi", "v1", index, media_type=OCI_INDEX)
    ref = f"{registry.host}/img/multi:v1"
    p = wharf(home, "pull", "--unpack", ref, "-o", tmp_path / "none")
    assert p.returncode == 1
    assert p.stderr == (f"wharf: error: {ref} is an index of 2 manifests; pick one with "
                        f"--platform OS/ARCH[/VARIANT] or by digest: linux/amd64 ({amd}), "
                        f"linux/arm64/v8 ({arm})\n"), p.stderr
    p = wharf(home, "pull", "--unpack", "--platform", "linux/arm64", ref, "-o", tmp_path / "arm")
    assert p.returncode == 0, p.stderr
    assert files(tmp_path / "arm") == {"arch": b"arm64\n"}
    p = wharf(home, "manifest", "fetch", "--platform", "linux/amd64", "--descriptor", ref)
    assert p.returncode == 0 and json.loads(p.stdout)["digest"] == amd, p.stderr
    p = wharf(home, "manifest", "fetch", "--platform", "windows/amd64", ref)
    assert p.returncode == 3
    assert "for platform windows/amd64 (it has linux/amd64, linux/arm64/v8)" in p.stderr
    p = wharf(home, "cp", "--platform", "linux/arm64/v8", ref, f"{registry.host}/img/arm:v1")
    assert p.returncode == 0, p.stderr
    p = wharf(home, "resolve", f"{registry.host}/img/arm:v1")
    assert p.stdout.strip() == arm


def test_layers_without_names_say_what_to_run(registry, tmp_path, home):
    blob = b"opaque bytes"
    d = registry.push_blob("x/raw", blob)
    empty = registry.push_blob("x/raw", b"{}")
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "artifactType": "application/vnd.example.thing",
         "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty,
                    "size": 2},
         "layers": [{"mediaType": "application/octet-stream", "digest": d,
                     "size": len(blob)}]}
    digest = registry.push_manifest("x/raw", "v1", m)
    p = wharf(home, "pull", f"{registry.host}/x/raw:v1", "-o", tmp_path / "out")
    assert p.returncode == 1
    assert p.stderr == (
        f"wharf: error: {registry.host}/x/raw@{digest} has 1 layer without a file name (no "
        f"org.opencontainers.image.title), so nothing was written; fetch one with `wharf blob "
        f"fetch {registry.host}/x/raw@DIGEST -o FILE`: {d}\n"), p.stderr


def test_chart_pushed_by_helm_is_pulled_as_helm_names_it(registry, tmp_path, home):
    helm = go_tool("helm")
    subprocess.run([helm, "create", "demo"], cwd=tmp_path, env=home, check=True,
                   capture_output=True)
    subprocess.run([helm, "package", "demo"], cwd=tmp_path, env=home, check=True,
                   capture_output=True)
    chart = tmp_path / "demo-0.1.0.tgz"
    subprocess.run([helm, "push", str(chart), f"oci://{registry.host}/charts", "--plain-http"],
                   env=home, check=True, capture_output=True)
    p = wharf(home, "pull", f"{registry.host}/charts/demo:0.1.0", "-o", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"Wrote {tmp_path / 'out' / 'demo-0.1.0.tgz'}\n"), p.stdout
    assert (tmp_path / "out" / "demo-0.1.0.tgz").read_bytes() == chart.read_bytes()


def test_bundle_pushed_by_flux_is_unpacked(registry, tmp_path, home):
    flux = go_tool("flux")
    src = tmp_path / "manifests"
    (src / "apps").mkdir(parents=True)
    (src / "apps" / "deploy.yaml").write_text("kind: Deployment\n")
    (src / "ns.yaml").write_text("kind: Namespace\n")
    r = subprocess.run([flux, "push", "artifact", f"oci://{registry.host}/bundles/app:v1",
                        f"--path={src}", "--source=https://git.example/app",
                        "--revision=main@sha1:0123456789abcdef", "--insecure-registry"],
                       env=home, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    p = wharf(home, "pull", f"{registry.host}/bundles/app:v1", "-o", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert files(tmp_path / "out") == {"apps/deploy.yaml": b"kind: Deployment\n",
                                       "ns.yaml": b"kind: Namespace\n"}
