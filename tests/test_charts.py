"""Helm charts with `wharf chart`, proven against the real helm: packaging (deterministic,
validated), push and pull in both directions byte for byte with helm's manifest, show,
export, dependencies (`Chart.lock` digests equal to helm's, each tool building from the
other's lock), Artifact Hub metadata, on a Wharf with auth (token service, `helm registry
login`) and on Distribution 2.8 and 3; and the refusals of bad charts and archives."""

import gzip
import io
import json
import subprocess
import tarfile

import pytest
import requests

from conftest import WHARF, go_tool, start_wharf
from test_auth import users_config


def run(env, *cmd, cwd=None, check=True, stdin=None):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                       timeout=180, input=stdin)
    if check:
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


@pytest.fixture
def authed(tmp_path):
    """A Wharf with one user, alice, behind the token service."""
    cfg = users_config(tmp_path / "wharf.toml", {"alice": "alice-pw"},
                       [(["**"], ["alice"], ["pull", "push", "delete"])])
    s = start_wharf(tmp_path / "data", config=cfg)
    yield s
    s.stop()


def helm_create(env, cwd, name, version="0.1.0", extra=""):
    run(env, go_tool("helm"), "create", name, cwd=cwd)
    chart_yaml = cwd / name / "Chart.yaml"
    text = chart_yaml.read_text().replace("version: 0.1.0", f"version: {version}")
    chart_yaml.write_text(text + extra)
    return cwd / name


def manifest(env, ref):
    return json.loads(run(env, go_tool("oras"), "manifest", "fetch", "--plain-http",
                          ref).stdout)


def test_helm_and_wharf_with_auth(authed, tool_env, tmp_path):
    env, h, helm = tool_env, authed.host, go_tool("helm")
    regcfg = tmp_path / "home" / ".config" / "helm" / "registry" / "config.json"
    # helm logs in through the token service; wharf reads the credentials helm stored
    run(env, helm, "registry", "login", h, "-u", "alice", "--password-stdin", "--plain-http",
        stdin=b"alice-pw")
    wenv = dict(env, DOCKER_CONFIG=str(regcfg.parent))
    helm_create(env, tmp_path, "demo", extra="keywords: [web, demo]\n")

    # package: the same input gives the same bytes, and helm reads the archive
    run(wenv, WHARF, "chart", "package", "demo", "-d", "a", cwd=tmp_path)
    run(wenv, WHARF, "chart", "package", "demo", "-d", "b", cwd=tmp_path)
    ours = (tmp_path / "a" / "demo-0.1.0.tgz").read_bytes()
    assert ours == (tmp_path / "b" / "demo-0.1.0.tgz").read_bytes()
    lint = run(env, helm, "lint", tmp_path / "a" / "demo-0.1.0.tgz")
    assert b"1 chart(s) linted, 0 chart(s) failed" in lint.stdout

    # wharf pushes, helm pulls the same bytes, shows and templates it
    p = run(wenv, WHARF, "chart", "push", tmp_path / "a" / "demo-0.1.0.tgz",
            f"oci://{h}/charts")
    assert p.stdout.decode().startswith(f"Pushed: {h}/charts/demo:0.1.0\nDigest: sha256:")
    (tmp_path / "helm-pulled").mkdir()
    run(env, helm, "pull", f"oci://{h}/charts/demo", "--version", "0.1.0", "--plain-http",
        "-d", tmp_path / "helm-pulled")
    assert (tmp_path / "helm-pulled" / "demo-0.1.0.tgz").read_bytes() == ours
    shown = run(env, helm, "show", "all", f"oci://{h}/charts/demo", "--version", "0.1.0",
                "--plain-http").stdout.decode()
    assert "name: demo" in shown and "replicaCount: 1" in shown
    tpl = run(env, helm, "template", "rel", f"oci://{h}/charts/demo", "--version", "0.1.0",
              "--plain-http").stdout.decode()
    assert "kind: Deployment" in tpl and "name: rel-demo" in tpl

    # helm pushes (with build metadata, and provenance-less), wharf pulls the newest
    helm_create(env, tmp_path / "a", "demo", version="0.2.0+build.5")
    run(env, helm, "package", "demo", "-d", tmp_path / "h", cwd=tmp_path / "a")
    helm_tgz = tmp_path / "h" / "demo-0.2.0+build.5.tgz"
    run(env, helm, "push", helm_tgz, f"oci://{h}/charts", "--plain-http")
    tags = run(env, go_tool("oras"), "repo", "tags", "--plain-http", "--registry-config",
               regcfg, f"{h}/charts/demo").stdout.decode().split()
    assert sorted(tags) == ["0.1.0", "0.2.0_build.5"]
    p = run(wenv, WHARF, "chart", "pull", f"oci://{h}/charts/demo", "-d", tmp_path / "w")
    assert f"Pulled: {h}/charts/demo:0.2.0_build.5\n" in p.stdout.decode()
    assert (tmp_path / "w" / "demo-0.2.0+build.5.tgz").read_bytes() == helm_tgz.read_bytes()
    # a constraint picks among versions; --untar unpacks
    run(wenv, WHARF, "chart", "pull", f"oci://{h}/charts/demo", "--version", "~0.1",
        "--untar", "-d", tmp_path / "u")
    assert "version: 0.1.0" in (tmp_path / "u" / "demo" / "Chart.yaml").read_text()

    # the same archive pushed by helm and by wharf gives the same manifest, but for the time
    run(env, helm, "push", tmp_path / "a" / "demo-0.1.0.tgz", f"oci://{h}/by-helm",
        "--plain-http")
    ours_m = manifest(wenv, f"{h}/charts/demo:0.1.0")
    helms_m = manifest(wenv, f"{h}/by-helm/demo:0.1.0")
    for m in (ours_m, helms_m):
        m["annotations"].pop("org.opencontainers.image.created")
    assert ours_m == helms_m
    assert ours_m["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json"
    assert [l["mediaType"] for l in ours_m["layers"]] == [
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"]
    assert ours_m["annotations"]["org.opencontainers.image.title"] == "demo"

    # show and export, as helm show and the old helm chart export
    values = run(wenv, WHARF, "chart", "show", "values", f"oci://{h}/charts/demo:0.1.0")
    assert values.stdout.startswith(b"# Default values for demo.")
    run(wenv, WHARF, "chart", "export", f"oci://{h}/charts/demo:0.1.0", tmp_path / "exp")
    assert (tmp_path / "exp" / "demo" / "templates" / "deployment.yaml").exists()


def parent_chart(env, cwd, h, name="app"):
    d = helm_create(env, cwd, name, extra=(
        "dependencies:\n"
        "  - name: demo\n"
        "    version: \">=0.1.0 <1.0.0\"\n"
        f"    repository: oci://{h}/charts\n"))
    return d


def test_dependencies_agree_with_helm(authed, tool_env, tmp_path):
    env, h, helm = tool_env, authed.host, go_tool("helm")
    regcfg = tmp_path / "home" / ".config" / "helm" / "registry" / "config.json"
    run(env, helm, "registry", "login", h, "-u", "alice", "--password-stdin", "--plain-http",
        stdin=b"alice-pw")
    wenv = dict(env, DOCKER_CONFIG=str(regcfg.parent))
    for v in ("0.1.0", "0.3.0", "0.4.0-rc.1", "1.0.0"):
        d = helm_create(env, tmp_path / f"v{v}", "demo", version=v) \
            if (tmp_path / f"v{v}").mkdir() is None else None
        run(wenv, WHARF, "chart", "package", d, "-d", tmp_path / "pkgs")
        run(wenv, WHARF, "chart", "push", tmp_path / "pkgs" / f"demo-{v}.tgz",
            f"oci://{h}/charts")

    # wharf resolves the range to 0.3.0 (not the pre-release, not 1.0.0) and locks it
    (tmp_path / "w").mkdir()
    ours = parent_chart(env, tmp_path / "w", h)
    p = run(wenv, WHARF, "chart", "dependency", "update", ours)
    assert b"Saved demo 0.3.0" in p.stdout
    assert (ours / "charts" / "demo-0.3.0.tgz").exists()
    # helm does the same on its own copy: same version, same lock digest
    (tmp_path / "hh").mkdir()
    theirs = parent_chart(env, tmp_path / "hh", h)
    run(env, helm, "dependency", "update", theirs, "--plain-http")
    assert (theirs / "charts" / "demo-0.3.0.tgz").read_bytes() == \
        (ours / "charts" / "demo-0.3.0.tgz").read_bytes()
    lock = lambda d: {k: v for k, v in  # noqa: E731
                      (l.split(": ", 1) for l in (d / "Chart.lock").read_text().splitlines()
                       if l.startswith(("digest", "  version")))}
    assert lock(ours) == lock(theirs) and lock(ours)["digest"].startswith("sha256:")

    # each builds from the other's lock
    for d in (ours, theirs):
        for f in (d / "charts").iterdir():
            f.unlink()
    run(env, helm, "dependency", "build", ours, "--plain-http")
    assert (ours / "charts" / "demo-0.3.0.tgz").exists()
    run(wenv, WHARF, "chart", "dependency", "build", theirs)
    assert (theirs / "charts" / "demo-0.3.0.tgz").exists()

    # the parent packages (its dependency present) and helm templates it
    run(wenv, WHARF, "chart", "package", ours, "-d", tmp_path / "out")
    tpl = run(env, helm, "template", "rel", tmp_path / "out" / "app-0.1.0.tgz").stdout.decode()
    assert "name: rel-demo" in tpl and "name: rel-app" in tpl

    # a lock out of step with Chart.yaml is refused, as helm refuses it
    text = (ours / "Chart.yaml").read_text().replace('">=0.1.0 <1.0.0"', "^1.0.0")
    (ours / "Chart.yaml").write_text(text)
    p = run(wenv, WHARF, "chart", "dependency", "build", ours, check=False)
    assert p.returncode == 1 and b"out of sync" in p.stderr, p.stderr
    # and a range nothing satisfies says what there is
    (ours / "Chart.yaml").write_text(text.replace("^1.0.0", "^2.0.0"))
    p = run(wenv, WHARF, "chart", "dependency", "update", ours, check=False)
    assert p.returncode == 3, p.stderr
    assert b"dependency demo matching ^2.0.0 at oci://" in p.stderr
    assert b"(versions there: 1.0.0, 0.4.0-rc.1, 0.3.0, 0.1.0) not found" in p.stderr


def test_charts_on_distribution(peer_registry, tool_env, tmp_path):
    env, h, helm = tool_env, peer_registry.host, go_tool("helm")
    helm_create(env, tmp_path, "demo")
    run(env, helm, "package", "demo", "-d", "pkg", cwd=tmp_path)
    tgz = tmp_path / "pkg" / "demo-0.1.0.tgz"
    (tmp_path / "pkg" / "demo-0.1.0.tgz.prov").write_text("provenance\n")
    run(env, WHARF, "chart", "push", tgz, f"oci://{h}/x")
    (tmp_path / "hp").mkdir()
    run(env, helm, "pull", f"oci://{h}/x/demo", "--plain-http", "-d", tmp_path / "hp")
    assert (tmp_path / "hp" / "demo-0.1.0.tgz").read_bytes() == tgz.read_bytes()
    m = manifest(env, f"{h}/x/demo:0.1.0")
    assert sorted(l["mediaType"] for l in m["layers"]) == [
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        "application/vnd.cncf.helm.chart.provenance.v1.prov"]
    run(env, helm, "push", tgz, f"oci://{h}/y", "--plain-http")
    run(env, WHARF, "chart", "pull", f"oci://{h}/y/demo", "-d", tmp_path / "wp")
    assert (tmp_path / "wp" / "demo-0.1.0.tgz").read_bytes() == tgz.read_bytes()


def bad_tgz(path, entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            else:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if kind != "sym" else None)
    path.write_bytes(gzip.compress(buf.getvalue()))


def test_bad_charts_are_refused(peer_registry, tool_env, tmp_path):
    env, h = tool_env, peer_registry.host
    chart = b"apiVersion: v2\nname: c\nversion: 1.0.0\n"

    def refused(*args, why, code=1):
        p = run(env, WHARF, *args, cwd=tmp_path, check=False)
        err = p.stderr.decode()
        assert p.returncode == code and why in err, (args, p.returncode, err)
        assert err.count("\n") == 1, err

    (tmp_path / "empty").mkdir()
    refused("chart", "package", "empty", why="has no Chart.yaml")
    (tmp_path / "badver").mkdir()
    (tmp_path / "badver" / "Chart.yaml").write_text("apiVersion: v2\nname: b\nversion: 1.0\n")
    refused("chart", "package", "badver", why="is not SemVer 2")
    (tmp_path / "dep").mkdir()
    (tmp_path / "dep" / "Chart.yaml").write_text(
        "apiVersion: v2\nname: d\nversion: 1.0.0\ndependencies:\n"
        f"- name: nothere\n  version: ^1.0.0\n  repository: oci://{h}/none\n")
    refused("chart", "package", "dep", why="dependency nothere ^1.0.0")
    refused("chart", "dependency", "update", "dep", why="nothere", code=3)
    assert not (tmp_path / "dep" / "Chart.lock").exists()
    assert list(tmp_path.glob("*.tgz")) == []

    bad_tgz(tmp_path / "dots.tgz", [("c/Chart.yaml", chart, "f"), ("c/../../x", b"x", "f")])
    refused("chart", "push", "dots.tgz", f"oci://{h}/x", why="leaves the chart's directory")
    bad_tgz(tmp_path / "abs.tgz", [("/c/Chart.yaml", chart, "f")])
    refused("chart", "push", "abs.tgz", f"oci://{h}/x", why="absolute path")
    bad_tgz(tmp_path / "sym.tgz", [("c/Chart.yaml", chart, "f"), ("c/l", b"", "sym")])
    refused("chart", "show", "all", "sym.tgz", why="is a symlink")
    bad_tgz(tmp_path / "bomb.tgz", [("c/Chart.yaml", chart, "f"),
                                    *[(f"c/z{i}", bytes(4 << 20), "f") for i in range(26)]])
    assert (tmp_path / "bomb.tgz").stat().st_size < 1 << 20
    refused("chart", "push", "bomb.tgz", f"oci://{h}/x", why="expands past 100 MiB")
    with open(tmp_path / "huge.tgz", "wb") as f:  # sparse: refused before it is read
        f.truncate(101 << 20)
    refused("chart", "push", "huge.tgz", f"oci://{h}/x",
            why="a chart archive is at most 100 MiB")
    refused("chart", "show", "chart", "huge.tgz", why="a chart archive is at most 100 MiB")
    # nothing reached the registry
    assert requests.get(f"{peer_registry.url}/v2/x/c/tags/list").status_code == 404

    # a non-chart is named as such; a reference without oci:// says how to write one
    (tmp_path / "f.txt").write_text("x")
    run(env, WHARF, "push", f"{h}/plain:v1", "f.txt", cwd=tmp_path)
    refused("chart", "pull", f"oci://{h}/plain:v1", why="is not a Helm chart")
    refused("chart", "pull", f"{h}/plain:v1", why="start with oci://")
    refused("chart", "push", "dots.tgz", f"oci://{h}/x:1", why="give the namespace only")


def test_artifacthub_metadata(tool_env, tmp_path):
    s = start_wharf(tmp_path / "data")
    try:
        env, h = tool_env, s.host
        (tmp_path / "artifacthub-repo.yml").write_text(
            "repositoryID: 5c3e4c2a-1f2b-4b6e-9c1d-000000000000\n"
            "owners:\n  - name: alice\n    email: alice@example.com\n")
        run(env, WHARF, "chart", "repo-metadata", "push", "artifacthub-repo.yml",
            f"oci://{h}/charts/demo", cwd=tmp_path)
        m = manifest(env, f"{h}/charts/demo:artifacthub.io")
        assert m["config"]["mediaType"] == "application/vnd.cncf.artifacthub.config.v1+yaml"
        assert [l["mediaType"] for l in m["layers"]] == [
            "application/vnd.cncf.artifacthub.repository-metadata.layer.v1.yaml"]
        run(env, go_tool("oras"), "pull", "--plain-http", f"{h}/charts/demo:artifacthub.io",
            "-o", tmp_path / "got")
        assert (tmp_path / "got" / "artifacthub-repo.yml").read_text().startswith(
            "repositoryID")
        (tmp_path / "bad.yml").write_text("owners: alice\n")
        p = run(env, WHARF, "chart", "repo-metadata", "push", "bad.yml",
                f"oci://{h}/charts/demo", cwd=tmp_path, check=False)
        assert p.returncode == 1 and b"owners must be a list" in p.stderr
    finally:
        s.stop()
