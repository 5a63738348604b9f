"""Flux manifest bundles with `wharf artifact`, proven against the real flux CLI in both
directions on Wharf and Distribution 2.8 and 3: push, pull, list, tag and diff; flux's
config bytes, media types, annotations and ignore rules; bombs and hostile archives refused
with nothing written."""

import gzip
import io
import json
import subprocess
import tarfile

from conftest import WHARF, go_tool, sha256

FLUX_CONFIG = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT = "application/vnd.cncf.flux.content.v1.tar+gzip"


def run(env, *cmd, cwd=None, check=True):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                       timeout=180)
    if check:
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


def tree(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def manifests_dir(root):
    src = root / "deploy"
    (src / "apps").mkdir(parents=True)
    (src / "apps" / "deploy.yaml").write_text("kind: Deployment\n")
    (src / "ns.yaml").write_text("kind: Namespace\n")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: main\n")
    (src / "logo.png").write_bytes(b"\x89PNG")
    return src


def test_bundles_both_ways_with_flux(peer_registry, tool_env, tmp_path):
    env, h, flux = tool_env, peer_registry.host, go_tool("flux")
    src = manifests_dir(tmp_path)
    expected = {"apps/deploy.yaml": b"kind: Deployment\n", "ns.yaml": b"kind: Namespace\n"}

    # wharf pushes, flux pulls and lists it
    p = run(env, WHARF, "artifact", "push", f"oci://{h}/b/app:v1", "--path", src,
            "--source", "https://github.com/org/app", "--revision", "main@sha1:4f2c0e1",
            "--annotation", "team=platform")
    assert p.stdout.decode().startswith(f"Pushed 2 files ("), p.stdout
    (tmp_path / "fp").mkdir()
    run(env, flux, "pull", "artifact", f"oci://{h}/b/app:v1", "--output", tmp_path / "fp",
        "--insecure-registry")
    assert tree(tmp_path / "fp") == expected
    listed = run(env, flux, "list", "artifacts", f"oci://{h}/b/app",
                 "--insecure-registry").stdout.decode().splitlines()
    assert listed[0].split() == ["ARTIFACT", "DIGEST", "SOURCE", "REVISION"], listed
    assert listed[1].split()[2:] == ["https://github.com/org/app", "main@sha1:4f2c0e1"]

    # flux pushes the same directory: the same config, layer type and annotation keys
    run(env, flux, "push", "artifact", f"oci://{h}/b/app:v2", "--path", src,
        "--source", "https://github.com/org/app", "--revision", "main@sha1:5a5a5a5",
        "--insecure-registry")
    fetch = lambda ref: json.loads(run(env, go_tool("oras"), "manifest", "fetch",  # noqa
                                       "--plain-http", ref).stdout)
    ours, theirs = fetch(f"{h}/b/app:v1"), fetch(f"{h}/b/app:v2")
    assert ours["config"] == theirs["config"] and ours["config"]["mediaType"] == FLUX_CONFIG
    assert [l["mediaType"] for l in ours["layers"]] == [FLUX_CONTENT]
    assert list(ours) == list(theirs), "field order"
    assert set(ours["annotations"]) - {"team"} == set(theirs["annotations"])

    # wharf pulls, lists, tags what flux pushed; flux pulls by the new tag
    p = run(env, WHARF, "artifact", "pull", f"oci://{h}/b/app:v2", "-o", tmp_path / "wp")
    assert "revision main@sha1:5a5a5a5" in p.stdout.decode()
    assert tree(tmp_path / "wp") == expected
    listed = json.loads(run(env, WHARF, "artifact", "list", f"oci://{h}/b/app",
                            "--format", "json").stdout)["artifacts"]
    assert {a["tag"]: a["revision"] for a in listed} == {
        "v1": "main@sha1:4f2c0e1", "v2": "main@sha1:5a5a5a5"}
    assert all(a["source"] == "https://github.com/org/app" and a["created"] for a in listed)
    run(env, WHARF, "artifact", "tag", f"oci://{h}/b/app:v2", "--tag", "latest")
    (tmp_path / "fl").mkdir()
    run(env, flux, "pull", "artifact", f"oci://{h}/b/app:latest", "--output",
        tmp_path / "fl", "--insecure-registry")
    assert tree(tmp_path / "fl") == expected

    # diff compares files: none for the same files (ignored ones aside) whoever pushed
    # them. (flux diff compares the compressed layer's digest instead, which only flux's own
    # gzip reproduces: it passes on flux's push and not on wharf's, see docs/bundles.md.)
    for tag in ("v1", "v2"):
        run(env, WHARF, "artifact", "diff", f"oci://{h}/b/app:{tag}", "--path", src)
    run(env, flux, "diff", "artifact", f"oci://{h}/b/app:v2", "--path", src,
        "--insecure-registry")
    (src / "ns.yaml").write_text("kind: Namespace\nmetadata: {name: x}\n")
    (src / "extra.yaml").write_text("kind: ConfigMap\n")
    (src / "apps" / "deploy.yaml").unlink()
    p = run(env, WHARF, "artifact", "diff", f"oci://{h}/b/app:v2", "--path", src, check=False)
    assert p.returncode == 1
    assert p.stdout.decode() == "- apps/deploy.yaml\n+ extra.yaml\n~ ns.yaml\n"
    assert p.stderr.decode().endswith("in 3 files\n"), p.stderr


def push_layer(registry, repo, tag, layer):
    """A bundle manifest around an arbitrary layer, pushed over the API."""
    cfg = b"{}"
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": FLUX_CONFIG, "digest": registry.push_blob(repo, cfg),
                    "size": len(cfg)},
         "layers": [{"mediaType": FLUX_CONTENT, "digest": registry.push_blob(repo, layer),
                     "size": len(layer)}]}
    return registry.push_manifest(repo, tag, m)


def tgz(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


def test_bad_bundles_are_refused(peer_registry, tool_env, tmp_path):
    env, h = tool_env, peer_registry.host
    bomb = tgz([(f"f{i}", bytes(1 << 20)) for i in range(3)])
    assert len(bomb) < 64 << 10 and sha256(bomb)
    push_layer(peer_registry, "b/bad", "bomb", bomb)
    out = tmp_path / "out"
    p = run(env, WHARF, "artifact", "pull", f"oci://{h}/b/bad:bomb", "-o", out,
            "--max-size", "2", check=False)
    assert p.returncode == 1 and b"expands past 2 MiB" in p.stderr, p.stderr
    assert p.stderr.count(b"\n") == 1
    assert list(out.iterdir()) == [], "nothing written"
    run(env, WHARF, "artifact", "pull", f"oci://{h}/b/bad:bomb", "-o", out, "--max-size", "4")
    assert len(list(out.iterdir())) == 3

    push_layer(peer_registry, "b/bad", "dots", tgz([("../../escape", b"x")]))
    p = run(env, WHARF, "artifact", "pull", f"oci://{h}/b/bad:dots", "-o", tmp_path / "o2",
            check=False)
    assert p.returncode == 1 and b"leaves the output directory" in p.stderr, p.stderr
    assert not (tmp_path / "escape").exists() and list((tmp_path / "o2").iterdir()) == []

    # a push needs a tag and an existing path; a pull needs a bundle
    p = run(env, WHARF, "artifact", "push", f"oci://{h}/b/app", "--path", tmp_path,
            "--source", "s", "--revision", "r", check=False)
    assert p.returncode == 1 and b"give the bundle a tag" in p.stderr
    p = run(env, WHARF, "artifact", "push", f"oci://{h}/b/app:v1", "--path", tmp_path / "no",
            "--source", "s", "--revision", "r", check=False)
    assert p.returncode == 1 and b"no such file or directory" in p.stderr
    p = run(env, WHARF, "artifact", "pull", f"{h}/b/app:v1", "-o", tmp_path, check=False)
    assert p.returncode == 1 and b"start with oci://" in p.stderr
