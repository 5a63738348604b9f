"""Writes OCI image layouts to disk (real gzip'd tar layers, image configs, index.json), so that
clients such as skopeo have multi-layer images and multi-platform indexes to copy."""

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _put(root: Path, data: bytes) -> dict:
    h = hashlib.sha256(data).hexdigest()
    p = root / "blobs" / "sha256" / h
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return {"digest": "sha256:" + h, "size": len(data)}


def _layer(files: dict) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def _image(root: Path, arch: str, layers: int, seed: str, layer_size: int) -> dict:
    descs, diff_ids = [], []
    for i in range(layers):
        payload = hashlib.sha256(f"{seed}-{arch}-{i}".encode()).digest() * (layer_size // 32)
        gz, diff_id = _layer({f"layer{i}/data.bin": payload, f"layer{i}/arch": arch.encode()})
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_put(root, gz)})
        diff_ids.append(diff_id)
    config = json.dumps({"architecture": arch, "os": "linux",
                         "config": {"Env": ["PATH=/usr/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      **_put(root, config)},
                           "layers": descs}, indent=2).encode()
    return {"mediaType": OCI_MANIFEST, **_put(root, manifest),
            "platform": {"architecture": arch, "os": "linux"}}


def write_layout(root: Path, tag: str, archs=("amd64",), layers=3, seed="x",
                 layer_size=64 * 1024) -> str:
    """Writes an image (one arch) or an index (several) under `tag`; returns its digest."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    images = [_image(root, a, layers, seed, layer_size) for a in archs]
    if len(images) == 1:
        top = images[0]
        top.pop("platform")
    else:
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": images}).encode()
        top = {"mediaType": OCI_INDEX, **_put(root, index)}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    idx_path = root / "index.json"
    existing = json.loads(idx_path.read_text())["manifests"] if idx_path.exists() else []
    idx_path.write_text(json.dumps({"schemaVersion": 2, "manifests": existing + [top]}))
    return top["digest"]
