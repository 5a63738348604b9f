"""The registry knows what it stores: kinds recorded at push time, charts indexed from their
config, the `_wharf` extension (announced at /v2/_oci/ext/discover) listing a repository's
artifacts with referrer counts and searching across repositories by text, kind and version
range within the caller's rights, `wharf search` and `wharf chart search` over it, kind
rules per repository pattern, and the index of manifests stored before the index existed;
on SQLite + filesystem, PostgreSQL and S3."""

import json
import sqlite3
import subprocess

import requests

from conftest import WHARF, go_tool, start_wharf
from test_auth import users_config


def run(env, *cmd, cwd=None, check=True):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                       timeout=180)
    if check:
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


def make_chart(env, root, name, version, description, keywords):
    d = root / f"{name}-{version}"
    (d / "templates").mkdir(parents=True)
    (d / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: '9.{version}'\n"
        f"description: {description}\nkeywords: [{', '.join(keywords)}]\n")
    (d / "values.yaml").write_text("a: 1\n")
    (d / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n")
    run(env, WHARF, "chart", "package", d, "-d", root / "pkg")
    return root / "pkg" / f"{name}-{version}.tgz"


def populate(env, h, tmp_path):
    """Charts, an artifact with an SBOM, a Flux bundle: one of each kind we can push."""
    for name, version, desc, kw in [("redis", "17.1.0", "In-memory data store", ["cache", "db"]),
                                    ("redis", "18.0.0", "In-memory data store", ["cache", "db"]),
                                    ("redis", "16.0.0-rc.1", "In-memory data store", ["cache"]),
                                    ("nginx", "1.0.0", "Web server", ["web", "http"])]:
        tgz = make_chart(env, tmp_path, name, version, desc, kw)
        run(env, WHARF, "chart", "push", tgz, f"oci://{h}/charts")
    (tmp_path / "app.txt").write_text("app")
    run(env, WHARF, "push", f"{h}/apps/web:v1", "app.txt", cwd=tmp_path)
    (tmp_path / "sbom.json").write_text(json.dumps(
        {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "web"}))
    run(env, WHARF, "sbom", "attach", f"{h}/apps/web:v1", tmp_path / "sbom.json")
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "ns.yaml").write_text("kind: Namespace\n")
    run(env, WHARF, "artifact", "push", f"oci://{h}/deploy/web:v1", "--path",
        tmp_path / "deploy", "--source", "https://git.example/web", "--revision", "main@sha1:1")


def test_kinds_listing_and_search(wharf, tool_env, tmp_path):
    env, h, url = tool_env, wharf.host, wharf.url
    populate(env, h, tmp_path)
    ext = requests.get(f"{url}/v2/_oci/ext/discover").json()["extensions"]
    assert ext[0]["name"] == "_wharf" and "_wharf/ext/search" in ext[0]["endpoints"]

    listed = requests.get(f"{url}/v2/apps/web/_wharf/artifacts").json()["artifacts"]
    kinds = {a["kind"]: a for a in listed}
    assert set(kinds) == {"other", "sbom"}, listed
    assert kinds["other"]["tags"] == ["v1"] and kinds["other"]["referrers"] == 1
    assert kinds["sbom"]["artifactType"] == "application/spdx+json"
    assert all(a["size"] > 0 and a["created"].endswith("Z") for a in listed)
    # paginated, with a Link to the next page
    r = requests.get(f"{url}/v2/apps/web/_wharf/artifacts?n=1")
    assert len(r.json()["artifacts"]) == 1 and 'rel="next"' in r.headers["link"]
    nxt = r.headers["link"].split(";")[0].strip("<>")
    assert requests.get(url + nxt).json()["artifacts"][0]["digest"] != \
        r.json()["artifacts"][0]["digest"]
    bundle = requests.get(f"{url}/v2/deploy/web/_wharf/artifacts").json()["artifacts"]
    assert [a["kind"] for a in bundle] == ["flux-bundle"]

    def search(**params):
        r = requests.get(f"{url}/v2/_wharf/ext/search", params=params)
        assert r.status_code == 200, r.text
        return r.json()["results"]

    charts = search(kind="helm-chart")
    assert sorted((c["name"], c["version"]) for c in charts) == [
        ("nginx", "1.0.0"), ("redis", "16.0.0-rc.1"), ("redis", "17.1.0"), ("redis", "18.0.0")]
    redis = [c for c in charts if c["version"] == "17.1.0"][0]
    assert redis["appVersion"] == "9.17.1.0" and redis["keywords"] == ["cache", "db"]
    assert redis["description"] == "In-memory data store" and redis["tags"] == ["17.1.0"]
    # by text: name, description, keywords, repository; case-insensitive
    assert {c["name"] for c in search(q="WEB SERVER")} == {"nginx"}
    assert {c["repository"] for c in search(q="cache")} == {"charts/redis"}
    assert {c["repository"] for c in search(q="apps/")} == {"apps/web"}
    # by version range (pre-releases only when the range names one)
    assert [c["version"] for c in search(q="redis", version="^17")] == ["17.1.0"]
    assert sorted(c["version"] for c in search(q="redis", version=">=16.0.0-0")) == [
        "16.0.0-rc.1", "17.1.0", "18.0.0"]
    assert [c["kind"] for c in search(kind="sbom")] == ["sbom"]
    bad = requests.get(f"{url}/v2/_wharf/ext/search", params={"kind": "chart"})
    assert bad.status_code == 400 and "helm-chart" in bad.text
    bad = requests.get(f"{url}/v2/_wharf/ext/search", params={"version": ">>1"})
    assert bad.status_code == 400
    # pages follow each other without repeats
    seen, nxt = [], "/v2/_wharf/ext/search?n=2"
    while nxt:
        r = requests.get(url + nxt)
        seen += [a["digest"] for a in r.json()["results"]]
        link = r.headers.get("link")
        nxt = link.split(";")[0].strip("<>") if link else None
    assert len(seen) == len(set(seen)) == len(search())

    # the CLI: wharf search and wharf chart search (newest of each chart, or every version)
    p = run(env, WHARF, "search", "redis", "--kind", "helm-chart", "--registry", h,
            "--format", "json")
    assert len(json.loads(p.stdout)["results"]) == 3
    p = run(env, WHARF, "chart", "search", "", "--registry", h).stdout.decode().splitlines()
    assert p[0].split("\t") == ["NAME", "CHART VERSION", "APP VERSION", "DESCRIPTION"]
    assert p[1:] == [f"oci://{h}/charts/nginx\t1.0.0\t9.1.0.0\tWeb server",
                     f"oci://{h}/charts/redis\t18.0.0\t9.18.0.0\tIn-memory data store"]
    p = run(env, WHARF, "chart", "search", "redis", "--versions", "--registry", h)
    assert len(p.stdout.decode().splitlines()) == 4
    p = run(env, WHARF, "search", "x", "--kind", "chart", "--registry", h, check=False)
    assert p.returncode == 1 and b"unknown kind" in p.stderr


def test_search_respects_rights(tmp_path, tool_env):
    cfg = users_config(tmp_path / "wharf.toml", {"alice": "alice-pw", "bob": "bob-pw"},
                       [(["**"], ["alice"], ["pull", "push"]),
                        (["charts/nginx"], ["bob"], ["pull"])])
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        env = dict(tool_env, WHARF_USERNAME="alice", WHARF_PASSWORD="alice-pw")
        populate(env, s.host, tmp_path)
        for user, pw, want in [("alice", "alice-pw", {"charts/nginx", "charts/redis"}),
                               ("bob", "bob-pw", {"charts/nginx"})]:
            p = run(dict(tool_env, WHARF_USERNAME=user, WHARF_PASSWORD=pw), WHARF, "search",
                    "", "--kind", "helm-chart", "--registry", s.host, "--format", "json")
            assert {r["repository"] for r in json.loads(p.stdout)["results"]} == want, user
        # anonymous callers are challenged, as for the catalog
        r = requests.get(f"{s.url}/v2/_wharf/ext/search")
        assert r.status_code == 401 and "www-authenticate" in r.headers
        r = requests.get(f"{s.url}/v2/charts/redis/_wharf/artifacts", auth=("bob", "bob-pw"))
        assert r.status_code in (401, 403)
    finally:
        s.stop()


def test_kind_rules_refuse_other_kinds(tmp_path, tool_env):
    cfg = tmp_path / "wharf.toml"
    cfg.write_text("""
[[artifact_kinds]]
repositories = ["charts/**"]
accept = ["helm-chart", "signature", "attestation", "sbom"]
""")
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        env, h = tool_env, s.host
        tgz = make_chart(env, tmp_path, "ok", "1.0.0", "fine", ["a"])
        run(env, WHARF, "chart", "push", tgz, f"oci://{h}/charts")
        run(env, go_tool("helm"), "push", tgz, f"oci://{h}/charts/helm", "--plain-http")
        (tmp_path / "f.txt").write_text("x")
        p = run(env, WHARF, "push", f"{h}/charts/notachart:v1", "f.txt", cwd=tmp_path,
                check=False)
        assert p.returncode == 4, p.stderr
        assert p.stderr.decode().endswith(
            "repository charts/notachart accepts only helm-chart, signature, attestation, "
            "sbom; this manifest is of kind other\n"), p.stderr
        # refused, never stored half: its blobs arrived, but no manifest and no tag
        r = requests.get(f"{s.url}/v2/charts/notachart/tags/list")
        assert r.status_code == 404 or not r.json()["tags"], r.text
        # an SBOM of a chart is accepted; elsewhere everything is
        run(env, WHARF, "push", f"{h}/apps/x:v1", "f.txt", cwd=tmp_path)
    finally:
        s.stop()


def test_a_bad_chart_config_is_refused(wharf, tool_env):
    cfg = b'{"name": "x"}'
    layer = b"\x1f\x8b not really"
    repo = "charts/broken"
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                    "digest": wharf.push_blob(repo, cfg), "size": len(cfg)},
         "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                     "digest": wharf.push_blob(repo, layer), "size": len(layer)}]}
    r = requests.put(f"{wharf.url}/v2/{repo}/manifests/1.0.0", data=json.dumps(m),
                     headers={"content-type": m["mediaType"]})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    assert "has no version" in r.text
    r = requests.get(f"{wharf.url}/v2/{repo}/tags/list")
    assert r.status_code == 404 or not r.json()["tags"], r.text


def test_manifests_from_before_the_index_are_indexed(tmp_path, tool_env):
    s = start_wharf(tmp_path / "data")
    env, h = tool_env, s.host
    tgz = make_chart(env, tmp_path, "old", "1.0.0", "from before", ["legacy"])
    run(env, WHARF, "chart", "push", tgz, f"oci://{h}/charts")
    s.stop()
    db = sqlite3.connect(tmp_path / "data" / "metadata.db")
    db.execute("UPDATE manifests SET kind = NULL, title = NULL, details = NULL")
    db.commit()
    db.close()
    s = start_wharf(tmp_path / "data")
    try:
        import time
        deadline = time.time() + 20
        while time.time() < deadline:
            found = requests.get(f"{s.url}/v2/_wharf/ext/search?q=legacy").json()["results"]
            if found:
                break
            time.sleep(0.1)
        assert [(f["kind"], f["name"]) for f in found] == [("helm-chart", "old")]
    finally:
        s.stop()


def test_chart_repository_view_with_helm(tmp_path, tool_env):
    """helm repo add / search repo / pull / template against the classic view of OCI charts,
    with basic auth, following pushes and deletes at once."""
    cfg = users_config(tmp_path / "wharf.toml", {"alice": "alice-pw", "bob": "bob-pw"},
                       [(["**"], ["alice"], ["pull", "push", "delete"]),
                        (["team/nginx"], ["bob"], ["pull"])])
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        env = dict(tool_env, WHARF_USERNAME="alice", WHARF_PASSWORD="alice-pw")
        h, helm = s.host, go_tool("helm")
        for name, version in [("redis", "17.1.0"), ("redis", "18.0.0+build.2"),
                              ("nginx", "1.0.0")]:
            tgz = make_chart(env, tmp_path, name, version, f"{name} chart", [name])
            run(env, WHARF, "chart", "push", tgz, f"oci://{h}/team")
        run(env, WHARF, "chart", "push", make_chart(env, tmp_path / "deep", "deep", "1.0.0",
                                                    "nested", []), f"oci://{h}/team/sub")
        repo_url = f"{s.url}/charts/team"
        run(tool_env, helm, "repo", "add", "team", repo_url, "--username", "alice",
            "--password", "alice-pw")
        out = run(tool_env, helm, "search", "repo", "team/", "--versions").stdout.decode()
        rows = [l.split("\t") for l in out.splitlines()[1:]]
        assert sorted((r[0].strip(), r[1].strip()) for r in rows) == [
            ("team/nginx", "1.0.0"), ("team/redis", "17.1.0"), ("team/redis", "18.0.0+build.2")]
        # helm pull by repo name gets the very bytes pushed; template renders from it
        (tmp_path / "pulled").mkdir()
        run(tool_env, helm, "pull", "team/redis", "--version", "17.1.0", "-d",
            tmp_path / "pulled")
        assert (tmp_path / "pulled" / "redis-17.1.0.tgz").read_bytes() == \
            (tmp_path / "pkg" / "redis-17.1.0.tgz").read_bytes()
        tpl = run(tool_env, helm, "template", "rel", "team/redis").stdout.decode()
        assert "name: rel-cm" in tpl
        # the index follows a delete at once
        run(env, WHARF, "untag", f"{h}/team/nginx:1.0.0")
        run(tool_env, helm, "repo", "update")
        out = run(tool_env, helm, "search", "repo", "team/").stdout.decode()
        assert "team/nginx" not in out and "team/redis" in out
        # bob sees only what he may pull; without credentials the view is closed
        index = requests.get(f"{repo_url}/index.yaml", auth=("bob", "bob-pw")).text
        assert "redis" not in index
        assert requests.get(f"{repo_url}/index.yaml").status_code == 401
        r = requests.get(f"{repo_url}/redis-17.1.0.tgz", auth=("bob", "bob-pw"))
        assert r.status_code == 403
        r = requests.get(f"{repo_url}/redis-9.9.9.tgz", auth=("alice", "alice-pw"))
        assert r.status_code == 404
        assert requests.put(f"{repo_url}/index.yaml", auth=("alice", "alice-pw"),
                            data=b"x").status_code == 405
    finally:
        s.stop()
