"""Access control over real HTTP, on both metadata backends: who may do what (the matrix),
tokens (forged, expired, signed elsewhere, escalated), API keys (scoped, revoked), rate
limiting of failed logins, and logins with real clients."""

import base64
import json
import os
import subprocess
import time

import pytest
import requests

from conftest import (OCI_MANIFEST, WHARF, assert_config_refused, error_code,
                      fresh_postgres_database, sha256, start_distribution, start_wharf)

PASSWORD = "correct horse"


def bcrypt_hash(pw):
    import bcrypt
    return bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()


def users_config(path, users, policies):
    """Writes a Wharf config with `users` ({name: password}) and `policies` ([(repository
    patterns, user names, actions)]), the token service on; returns `path`."""
    text = "[auth]\n"
    for name, pw in users.items():
        text += f'[[auth.users]]\nname = "{name}"\npassword_hash = "{bcrypt_hash(pw)}"\n'
    for repos, who, actions in policies:
        text += (f"[[auth.policies]]\nrepositories = {json.dumps(repos)}\n"
                 f"users = {json.dumps(who)}\nactions = {json.dumps(actions)}\n")
    path.write_text(text)
    return path


def config_text(tmp_path, extra="", auth_extra=""):
    h = bcrypt_hash(PASSWORD)
    return f"""
[auth]
{auth_extra}
admins = ["root"]
token_ttl_secs = 300
failed_login_limit = 5
[[auth.users]]
name = "root"
password_hash = "{h}"
[[auth.users]]
name = "reader"
password_hash = "{h}"
groups = ["readers"]
[[auth.users]]
name = "writer"
password_hash = "{h}"
[[auth.users]]
name = "lead"
password_hash = "{h}"
[[auth.policies]]
repositories = ["team/**"]
groups = ["readers"]
actions = ["pull"]
[[auth.policies]]
repositories = ["team/**"]
users = ["writer", "lead"]
actions = ["pull", "push", "delete"]
[[auth.policies]]
repositories = ["team/protected"]
users = ["lead"]
actions = ["overwrite"]
[[auth.policies]]
repositories = ["public/**"]
anonymous = true
actions = ["pull"]
{extra}"""


def eventually(check, within=10.0):
    """Polls `check` until it holds or `within` seconds pass: for what the clock decides."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def admin(*args, env):
    r = subprocess.run([str(WHARF), "admin", *args], capture_output=True, text=True, env=env,
                       timeout=60)
    return r


class Secured:
    def __init__(self, tmp_path, backend, extra="", auth_extra=""):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.cfg = tmp_path / "wharf.toml"
        self.cfg.write_text(config_text(tmp_path, extra, auth_extra))
        self.data = tmp_path / "data"
        self.store_args = ["--data-dir", str(self.data)]
        if backend == "postgres":
            self.store_args += ["--metadata-url", fresh_postgres_database()]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
        r = admin("api-key", "create", "ci", "--repository", "team/**", "--actions",
                  "pull,push", *self.store_args, env=self.env)
        assert r.returncode == 0, r.stderr
        self.key = r.stdout.strip()
        assert self.key.startswith("wharf_") and len(self.key) > 40
        self.server = start_wharf(self.data, *self.store_args[2:], config=self.cfg)
        self.url = self.server.url

    def session(self, who):
        s = requests.Session()
        if who == "apikey":
            s.auth = ("ci", self.key)
        elif who != "anonymous":
            s.auth = (who, PASSWORD)
        return s


@pytest.fixture(params=["sqlite", "postgres"])
def secured(request, tmp_path):
    s = Secured(tmp_path, request.param)
    root = s.session("root")
    s.seed = {}
    for repo in ("team/app", "team/other", "secret/app", "public/app"):
        s.server.http = root
        s.seed[repo] = s.server.push_image(repo, "v1", layers=[repo.encode() + b" layer"])
    s.server.http = requests.Session()
    yield s
    s.server.stop()


def manifest_for(s, repo, note):
    """A new manifest in `repo` (blobs pushed by root), not yet tagged."""
    root = s.session("root")
    s.server.http = root
    cd = s.server.push_blob(repo, json.dumps({"note": note}).encode())
    s.server.http = requests.Session()
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": cd, "size": len(json.dumps({"note": note}))},
                       "layers": []}).encode()


def do(s, who, action, repo):
    """Performs one action as `who`; returns the status code."""
    http = s.session(who)
    url = s.url
    digest, m = s.seed.get(repo, s.seed["team/app"])
    if action == "pull":
        return http.get(f"{url}/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code
    if action == "tags":
        return http.get(f"{url}/v2/{repo}/tags/list").status_code
    if action == "referrers":
        return http.get(f"{url}/v2/{repo}/referrers/{digest}").status_code
    if action == "push":
        body = manifest_for(s, repo, f"push {who} {time.time_ns()}")
        return http.put(f"{url}/v2/{repo}/manifests/new-{who}", data=body,
                        headers={"Content-Type": OCI_MANIFEST}).status_code
    if action == "overwrite":
        tag = f"ow-{time.time_ns()}"
        root = s.session("root")
        first = manifest_for(s, repo, "first " + tag)
        assert root.put(f"{url}/v2/{repo}/manifests/{tag}", data=first,
                        headers={"Content-Type": OCI_MANIFEST}).status_code == 201
        second = manifest_for(s, repo, "second " + tag)
        return http.put(f"{url}/v2/{repo}/manifests/{tag}", data=second,
                        headers={"Content-Type": OCI_MANIFEST}).status_code
    if action == "delete":
        body = manifest_for(s, repo, f"doomed {time.time_ns()}")
        r = s.session("root").put(f"{url}/v2/{repo}/manifests/doomed", data=body,
                                  headers={"Content-Type": OCI_MANIFEST})
        return http.delete(f"{url}/v2/{repo}/manifests/{r.headers['Docker-Content-Digest']}").status_code
    if action == "mount":
        layer = s.seed["team/other"][1]["layers"][0]["digest"]
        return http.post(f"{url}/v2/{repo}/blobs/uploads/",
                         params={"mount": layer, "from": "team/other"}).status_code
    layer = m["layers"][0]["digest"]
    if action == "blob_get":
        r = http.get(f"{url}/v2/{repo}/blobs/{layer}")
        assert r.status_code != 200 or sha256(r.content) == layer
        return r.status_code
    if action == "blob_head":
        return http.head(f"{url}/v2/{repo}/blobs/{layer}").status_code
    if action == "blob_delete":
        root = s.session("root")
        s.server.http = root
        doomed = s.server.push_blob(repo, f"doomed blob {time.time_ns()}".encode())
        s.server.http = requests.Session()
        status = http.delete(f"{url}/v2/{repo}/blobs/{doomed}").status_code
        # A refused delete leaves the blob where it was.
        still = root.head(f"{url}/v2/{repo}/blobs/{doomed}").status_code
        assert still == (404 if status == 202 else 200), (who, status, still)
        return status
    if action == "upload":
        return http.post(f"{url}/v2/{repo}/blobs/uploads/").status_code
    if action.startswith("session_"):
        # A session someone else (root) opened in the repository.
        started = s.session("root").post(f"{url}/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        loc = url + started.headers["Location"]
        if action == "session_patch":
            status = http.patch(loc, data=b"abc", headers={
                "Content-Type": "application/octet-stream", "Content-Range": "0-2"}).status_code
            size = s.session("root").get(loc).headers["Range"]
            assert size == ("0-2" if status == 202 else "0-0"), (who, status, size)
            return status
        if action == "session_status":
            return http.get(loc).status_code
        if action == "session_cancel":
            status = http.delete(loc).status_code
            after = s.session("root").get(loc).status_code
            assert after == (404 if status == 204 else 204), (who, status, after)
            return status
    raise AssertionError(action)


READ = {"pull", "tags", "referrers", "blob_get", "blob_head"}
WRITE = {"push", "mount", "upload", "session_patch", "session_status", "session_cancel"}
ALLOWED = {
    # who: actions allowed on team/app (secret/app is admin-only)
    "anonymous": set(),
    "reader": READ,
    "writer": READ | WRITE | {"delete", "blob_delete"},
    "admin": READ | WRITE | {"delete", "blob_delete", "overwrite"},
    "apikey": READ | WRITE,
}
ACTIONS = ["pull", "tags", "referrers", "push", "overwrite", "delete", "mount", "blob_get",
           "blob_head", "blob_delete", "upload", "session_patch", "session_status",
           "session_cancel"]
SUCCESS = {"push": 201, "overwrite": 201, "delete": 202, "mount": 201, "blob_delete": 202,
           "upload": 202, "session_patch": 202, "session_status": 204, "session_cancel": 204}


def test_the_matrix(secured):
    s = secured
    wrong = []
    for who, allowed in ALLOWED.items():
        login = "root" if who == "admin" else who
        for repo in ("team/app", "secret/app"):
            for action in ACTIONS:
                ok = who == "admin" or (repo == "team/app" and action in allowed)
                want = SUCCESS.get(action, 200)
                if not ok:
                    want = 401 if who == "anonymous" else 403
                got = do(s, login, action, repo)
                if got != want:
                    wrong.append((who, action, repo, got, want))
    assert not wrong, wrong
    # with [auth] configured, the start-up warning about open access is not given
    assert "access control is off" not in s.server.log()


def test_catalog_shows_only_what_the_caller_may_pull(secured):
    s = secured
    def catalog(who):
        r = s.session(who).get(f"{s.url}/v2/_catalog")
        assert r.status_code == 200, (who, r.status_code)
        return r.json()["repositories"]
    assert catalog("anonymous") == ["public/app"]
    assert catalog("reader") == ["public/app", "team/app", "team/other"]
    assert catalog("writer") == ["public/app", "team/app", "team/other"]
    assert catalog("apikey") == ["public/app", "team/app", "team/other"]
    assert catalog("root") == ["public/app", "secret/app", "team/app", "team/other"]
    # pagination still fills pages from what is visible
    r = s.session("reader").get(f"{s.url}/v2/_catalog", params={"n": 1})
    assert r.json()["repositories"] == ["public/app"] and "last=public" in r.headers["Link"]
    r = s.session("reader").get(f"{s.url}/v2/_catalog", params={"n": 1, "last": "public/app"})
    assert r.json()["repositories"] == ["team/app"]


def test_challenges_and_anonymous_public_read(secured):
    s = secured
    r = requests.get(f"{s.url}/v2/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer realm="{s.url}/token",service="wharf"')
    r = requests.get(f"{s.url}/v2/team/app/manifests/v1")
    assert r.status_code == 401 and r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert 'scope="repository:team/app:pull"' in r.headers["WWW-Authenticate"]
    r = requests.put(f"{s.url}/v2/team/app/manifests/x", data=b"{}")
    assert 'scope="repository:team/app:pull,push"' in r.headers["WWW-Authenticate"]
    assert requests.get(f"{s.url}/v2/public/app/manifests/v1",
                        headers={"Accept": OCI_MANIFEST}).status_code == 200
    assert requests.put(f"{s.url}/v2/public/app/manifests/x", data=b"{}").status_code == 401
    r = s.session("reader").get(f"{s.url}/v2/")
    assert r.status_code == 200
    r = s.session("reader").put(f"{s.url}/v2/team/app/manifests/x", data=b"{}")
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"


def test_overwrite_is_a_right_of_its_own(secured):
    s = secured
    root, lead, writer = (s.session(w) for w in ("root", "lead", "writer"))
    a = manifest_for(s, "team/protected", "a")
    b = manifest_for(s, "team/protected", "b")
    h = {"Content-Type": OCI_MANIFEST}
    assert writer.put(f"{s.url}/v2/team/protected/manifests/v1", data=a, headers=h).status_code == 201
    # the same content again is not a move
    assert writer.put(f"{s.url}/v2/team/protected/manifests/v1", data=a, headers=h).status_code == 201
    r = writer.put(f"{s.url}/v2/team/protected/manifests/v1", data=b, headers=h)
    assert r.status_code == 403 and "overwrite" in r.json()["errors"][0]["message"]
    assert lead.put(f"{s.url}/v2/team/protected/manifests/v1", data=b, headers=h).status_code == 201
    assert root.get(f"{s.url}/v2/team/protected/manifests/v1",
                    headers={"Accept": OCI_MANIFEST}).content == b


def test_mount_from_an_unreadable_repository_falls_back(secured):
    s = secured
    secret_layer = s.seed["secret/app"][1]["layers"][0]["digest"]
    w = s.session("writer")
    r = w.post(f"{s.url}/v2/team/app/blobs/uploads/",
               params={"mount": secret_layer, "from": "secret/app"})
    assert r.status_code == 202 and "Docker-Content-Digest" not in r.headers
    # nothing was linked: the writer still cannot read it in its own repository
    assert w.head(f"{s.url}/v2/team/app/blobs/{secret_layer}").status_code == 404
    # a mount without `from` does not search repositories the caller cannot see
    r = w.post(f"{s.url}/v2/team/app/blobs/uploads/", params={"mount": secret_layer})
    assert r.status_code == 202


def token(s, who, *scopes, password=PASSWORD):
    auth = None if who == "anonymous" else (("ci", s.key) if who == "apikey" else (who, password))
    r = requests.get(f"{s.url}/token", params=[("service", "wharf")] +
                     [("scope", sc) for sc in scopes], auth=auth)
    return r


def claims(tok):
    part = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_tokens_grant_only_what_policies_allow(secured):
    s = secured
    r = token(s, "reader", "repository:team/app:pull,push,delete", "repository:secret/app:pull")
    assert r.status_code == 200
    body = r.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    assert claims(body["token"])["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull"]}]
    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert requests.get(f"{s.url}/v2/team/app/tags/list", headers=bearer).status_code == 200
    assert requests.get(f"{s.url}/v2/secret/app/tags/list", headers=bearer).status_code == 403
    assert requests.put(f"{s.url}/v2/team/app/manifests/x", data=b"{}",
                        headers=bearer).status_code == 403
    # anonymous tokens carry the anonymous policies only
    anon = token(s, "anonymous", "repository:public/app:pull", "repository:team/app:pull").json()
    assert [a["name"] for a in claims(anon["token"])["access"]] == ["public/app"]
    # a wrong password gets no token at all
    assert token(s, "reader", "repository:team/app:pull", password="nope").status_code == 401
    # the OAuth2 POST form is not served, so clients fall back to GET instead of taking an
    # anonymous token for a successful login
    r = requests.post(f"{s.url}/token", data={"grant_type": "password", "username": "reader",
                                              "password": "nope", "service": "wharf"})
    assert r.status_code == 405 and r.headers["Allow"] == "GET"
    # a token does not buy a bigger token
    r = requests.get(f"{s.url}/token", params={"service": "wharf",
                                               "scope": "repository:team/app:pull"},
                     headers=bearer)
    assert claims(r.json()["token"])["sub"] == ""


def forge(tok, mutate):
    h, c, sig = tok.split(".")
    body = claims(tok)
    mutate(body)
    c2 = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{h}.{c2}.{sig}"


def test_forged_expired_and_foreign_tokens_are_refused(secured, tmp_path):
    s = secured
    tok = token(s, "reader", "repository:team/app:pull").json()["token"]
    url = f"{s.url}/v2/team/app/tags/list"
    def status(t):
        return requests.get(url, headers={"Authorization": f"Bearer {t}"}).status_code
    assert status(tok) == 200
    # scope escalation by editing the claims breaks the signature
    escalated = forge(tok, lambda c: c["access"].append(
        {"type": "repository", "name": "secret/app", "actions": ["pull", "push"]}))
    assert requests.get(f"{s.url}/v2/secret/app/tags/list",
                        headers={"Authorization": f"Bearer {escalated}"}).status_code == 401
    assert status(forge(tok, lambda c: c.update(exp=c["exp"] + 10_000))) == 401
    # alg "none"
    h = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    assert status(f"{h}.{tok.split('.')[1]}.") == 401
    assert status("not.a.token") == 401
    # a token from another Wharf (another signing key) is refused
    other = Secured(tmp_path / "other", "sqlite")
    try:
        foreign = requests.get(f"{other.url}/token", params={
            "service": "wharf", "scope": "repository:team/app:pull"},
            auth=("reader", PASSWORD)).json()["token"]
        assert status(foreign) == 401
    finally:
        other.server.stop()


def test_expired_tokens_are_refused(tmp_path):
    s = Secured(tmp_path, "sqlite", extra="")
    s.server.stop()
    # 2 s, not 1: expiry is counted in whole seconds, and a 1 s token issued just before a
    # second turns over may be expired by the request right after it.
    s.cfg.write_text(s.cfg.read_text().replace("token_ttl_secs = 300", "token_ttl_secs = 2"))
    s.server = start_wharf(s.data, config=s.cfg)
    s.url = s.server.url
    try:
        tok = token(s, "reader", "repository:team/app:pull").json()["token"]
        h = {"Authorization": f"Bearer {tok}"}
        # repository does not exist yet, but the token is accepted: 404, not 401
        assert requests.get(f"{s.url}/v2/team/app/tags/list", headers=h).status_code == 404
        assert eventually(lambda: requests.get(f"{s.url}/v2/team/app/tags/list",
                                               headers=h).status_code == 401), "never expired"
    finally:
        s.server.stop()


def test_api_keys_are_scoped_and_revocable(secured):
    s = secured
    k = s.session("apikey")
    assert k.get(f"{s.url}/v2/team/app/tags/list").status_code == 200
    assert k.get(f"{s.url}/v2/public/app/tags/list").status_code == 200  # anonymous policy
    assert k.get(f"{s.url}/v2/secret/app/tags/list").status_code == 403
    bad = requests.Session()
    bad.auth = ("ci", s.key[:-1] + ("0" if s.key[-1] != "0" else "1"))
    assert bad.get(f"{s.url}/v2/team/app/tags/list").status_code == 401
    listed = admin("api-key", "list", *s.store_args, env=s.env)
    assert listed.returncode == 0 and listed.stdout.startswith("ci\tactive")
    assert s.key not in listed.stdout
    r = admin("api-key", "revoke", "ci", *s.store_args, env=s.env)
    assert r.returncode == 0, r.stderr
    # replaying the revoked key: refused at once, for the API and the token service
    assert k.get(f"{s.url}/v2/team/app/tags/list").status_code == 401
    assert token(s, "apikey", "repository:team/app:pull").status_code == 401
    assert "revoked" in admin("api-key", "list", *s.store_args, env=s.env).stdout
    r = admin("api-key", "create", "ci", "--repository", "x", "--actions", "pull",
              *s.store_args, env=s.env)
    assert r.returncode != 0 and "exists already" in r.stderr


def test_expiring_api_key(tmp_path):
    s = Secured(tmp_path, "sqlite")
    try:
        r = admin("api-key", "create", "short", "--repository", "team/**", "--actions", "pull",
                  "--expires-in", "1s", *s.store_args, env=s.env)
        assert r.returncode == 0, r.stderr
        sess = requests.Session()
        sess.auth = ("short", r.stdout.strip())
        assert sess.get(f"{s.url}/v2/").status_code == 200
        assert eventually(lambda: sess.get(f"{s.url}/v2/").status_code == 401), "never expired"
    finally:
        s.server.stop()


def test_failed_logins_are_rate_limited(secured):
    s = secured
    bad = requests.Session()
    bad.auth = ("reader", "wrong")
    # A token taken before the lockout keeps working through it.
    tok = token(s, "reader", "repository:team/app:pull").json()["token"]
    codes = [bad.get(f"{s.url}/v2/").status_code for _ in range(7)]
    # failed_login_limit = 5: the limit is hit at exactly the fifth failure
    assert codes == [401] * 5 + [429] * 2, codes
    # even the right password waits now, for this user from this address
    r = s.session("reader").get(f"{s.url}/v2/")
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"
    assert error_code(r) == "TOOMANYREQUESTS"
    # another user from the same address is not locked out, nor is the token
    assert s.session("writer").get(f"{s.url}/v2/").status_code == 200
    assert requests.get(f"{s.url}/v2/team/app/tags/list",
                        headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    s.server.wait_log("authentication failed")


def test_token_service_counts_each_failed_login_once(secured):
    s = secured
    codes = [token(s, "reader", "repository:team/app:pull", password="nope").status_code
             for _ in range(7)]
    assert codes == [401] * 5 + [429] * 2, codes


def test_logins_with_real_clients(secured, tmp_path, monkeypatch):
    s = secured
    host = s.server.host
    # skopeo --creds, through the token service
    r = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds",
                        f"reader:{PASSWORD}", f"docker://{host}/team/app:v1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Digest"] == s.seed["team/app"][0]
    r = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds",
                        f"reader:{PASSWORD}", f"docker://{host}/secret/app:v1"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "denied" in r.stderr.lower(), r.stderr
    # podman login writes an auth file that skopeo then uses
    authfile = tmp_path / "auth.json"
    r = subprocess.run(["podman", "login", "--tls-verify=false", "--authfile", str(authfile),
                        "-u", "writer", "--password-stdin", host],
                       input=PASSWORD, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["podman", "login", "--tls-verify=false", "--authfile",
                        str(tmp_path / "bad.json"), "-u", "writer", "--password-stdin", host],
                       input="wrong", capture_output=True, text=True)
    assert r.returncode == 125 and "invalid username/password" in r.stderr.lower(), r.stderr
    monkeypatch.chdir(tmp_path)
    (tmp_path / "o.txt").write_text("via oras")
    # wharf login, and its token flow for a push
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker")
    r = subprocess.run([str(WHARF), "login", host, "-u", "writer", "--password-stdin"],
                       input=PASSWORD, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(WHARF), "push", f"{host}/team/cli:v1", "o.txt"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # the oras SDK with a login, through the token service. It keeps one token for
    # everything and, on a 401 for a scope that token lacks, sends the same token again (it
    # fetches another only on 403; Distribution answers 401 too), so here it reads what
    # wharf pushed: its first token covers the whole pull.
    import oras.client
    c = oras.client.OrasClient(hostname=host, insecure=True)
    c.login(username="reader", password=PASSWORD, hostname=host, tls_verify=False)
    got = c.pull(target=f"{host}/team/cli:v1", outdir=str(tmp_path / "out"))
    assert open(got[0]).read() == "via oras"
    r = subprocess.run([str(WHARF), "push", f"{host}/secret/cli:v1", "o.txt"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 4, r.stderr


def test_skopeo_podman_and_oras_against_htpasswd_distribution(tmp_path, monkeypatch):
    d = start_distribution(tmp_path, users={"alice": PASSWORD})
    try:
        (tmp_path / "f.txt").write_text("to distribution")
        monkeypatch.chdir(tmp_path)
        import oras.client
        # Distribution answers with a Basic challenge: the SDK's basic backend
        c = oras.client.OrasClient(hostname=d.host, insecure=True, auth_backend="basic")
        c.login(username="alice", password=PASSWORD, hostname=d.host, tls_verify=False)
        c.push(files=["f.txt"], target=f"{d.host}/x/f:v1")
        r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds",
                            f"alice:{PASSWORD}", f"docker://{d.host}/x/f:v1"],
                           capture_output=True, text=True)
        assert r.returncode == 0 and "f.txt" in r.stdout, r.stderr
        r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds",
                            "alice:wrong", f"docker://{d.host}/x/f:v1"],
                           capture_output=True, text=True)
        assert r.returncode == 1 and "unauthorized" in r.stderr.lower(), r.stderr
        for pw, ok in ((PASSWORD, True), ("wrong", False)):
            r = subprocess.run(["podman", "login", "--tls-verify=false", "--authfile",
                                str(tmp_path / f"podman-{ok}.json"), "-u", "alice",
                                "--password-stdin", d.host],
                               input=pw, capture_output=True, text=True)
            assert (r.returncode == 0) == ok, r.stderr
    finally:
        d.stop()


def test_refuses_open_non_loopback_without_auth(tmp_path):
    r = subprocess.run([str(WHARF), "serve", "--listen", "0.0.0.0:0", "--data-dir",
                        str(tmp_path / "d")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "[auth]" in r.stderr


def test_bad_auth_config_is_a_clear_error(tmp_path):
    assert_config_refused(tmp_path, [
        ('[auth]\n[[auth.policies]]\nrepositories = ["a"]\nactions = ["pull"]\n', "applies to nobody"),
        ('[auth]\n[[auth.policies]]\nrepositories = ["a"]\nusers = ["x"]\nactions = ["fly"]\n', "unknown action"),
        ('[auth]\n[[auth.users]]\nname = "x"\npassword_hash = "plain"\n', "bcrypt"),
        ('[auth]\nhtpasswd = "/nonexistent/htpasswd"\n', "htpasswd"),
        ('[auth]\nsurprise = 1\n', "unknown field"),
    ])


def test_the_documented_example_works(tmp_path):
    """docs/auth.md's complete example: it loads, and its policies do what the text says."""
    import re
    from pathlib import Path
    doc = (Path(__file__).parent.parent / "docs" / "auth.md").read_text()
    example = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"carol:{bcrypt_hash('carol-example')}\n")
    example = (example.replace('listen = "0.0.0.0:5000"\n', "")
               .replace("/etc/wharf/htpasswd", str(htpasswd))
               .replace("/var/lib/wharf", str(tmp_path / "data")))
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(example)
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        alice, bob, carol = requests.Session(), requests.Session(), requests.Session()
        alice.auth, bob.auth, carol.auth = (("alice", "alice-example"), ("bob", "bob-example"),
                                            ("carol", "carol-example"))
        s.http = bob
        s.push_image("team-a/app", "v1")
        s.http = alice
        s.push_image("base/os", "v1")
        h = {"Content-Type": OCI_MANIFEST}
        s.http = carol
        s.push_blob("team-a/app", b'{"other": 1}')
        moved = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                       "digest": sha256(b'{"other": 1}'), "size": 12},
                            "layers": []}).encode()
        assert carol.put(f"{s.url}/v2/team-a/app/manifests/v1", data=moved,
                         headers=h).status_code == 403  # team-a, but no overwrite
        assert bob.get(f"{s.url}/v2/base/os/manifests/v1",
                       headers={"Accept": OCI_MANIFEST}).status_code == 403
        assert alice.get(f"{s.url}/v2/team-a/app/manifests/v1",
                         headers={"Accept": OCI_MANIFEST}).status_code == 200  # platform reads all
        assert requests.get(f"{s.url}/v2/team-a/app/tags/list").status_code == 401
    finally:
        s.stop()



def test_admin_refuses_bad_api_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    store = ["--data-dir", str(tmp_path / "d")]
    for args, says in [
        (["bad name!", "--repository", "a/*", "--actions", "pull"], "letters, digits"),
        (["ok", "--repository", "a/*", "--actions", "fly"], "unknown action"),
        (["ok", "--repository", "a/***", "--actions", "pull"], "use * or **"),
        (["ok", "--repository", "a/*", "--actions", "pull", "--expires-in", "soon"], "soon"),
    ]:
        r = admin("api-key", "create", *args, *store, env=env)
        assert r.returncode != 0 and says in r.stderr, (args, r.stderr)
    r = admin("api-key", "revoke", "never-made", *store, env=env)
    assert r.returncode != 0 and "no active API key" in r.stderr


def challenge_params(r):
    """The parameters of a Bearer challenge, as a dict."""
    value = r.headers["WWW-Authenticate"]
    assert value.startswith("Bearer "), value
    import re
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


def test_a_token_lacking_a_scope_gets_a_challenge_for_it(secured):
    s = secured
    # The writer may push team/other, but holds a token for team/app only (clients that
    # reuse one token across repositories): 401 naming the scope needed, so they fetch one.
    tok = token(s, "writer", "repository:team/app:pull").json()["token"]
    h = {"Authorization": f"Bearer {tok}"}
    r = requests.get(f"{s.url}/v2/team/other/tags/list", headers=h)
    assert r.status_code == 401, r.text
    p = challenge_params(r)
    assert p["scope"] == "repository:team/other:pull" and p["error"] == "insufficient_scope", p
    assert p["service"] == "wharf" and p["realm"].endswith("/token")
    assert r.json()["errors"][0]["message"] == "the token lacks pull on team/other"
    r = requests.post(f"{s.url}/v2/team/app/blobs/uploads/", headers=h)
    assert r.status_code == 401
    assert challenge_params(r)["scope"] == "repository:team/app:pull,push"
    # The reader may not push anywhere in team/: whatever the token, 403, naming the user.
    tok = token(s, "reader", "repository:team/app:pull").json()["token"]
    r = requests.post(f"{s.url}/v2/team/app/blobs/uploads/",
                      headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 403 and error_code(r) == "DENIED"
    assert r.json()["errors"][0]["message"] == "reader may not push on team/app"
    assert "WWW-Authenticate" not in r.headers


def test_a_mount_challenges_for_the_source_too(secured):
    s = secured
    layer = s.seed["team/other"][1]["layers"][0]["digest"]
    url = f"{s.url}/v2/team/mounted/blobs/uploads/"
    params = {"mount": layer, "from": "team/other"}
    r = requests.post(url, params=params)
    assert r.status_code == 401
    scopes = challenge_params(r)["scope"].split(" ")
    assert scopes == ["repository:team/mounted:pull,push", "repository:team/other:pull"], scopes
    # A client that asks for what the challenge names gets a token with which the mount works.
    tok = token(s, "writer", *scopes).json()["token"]
    r = requests.post(url, params=params, headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == layer, r.text


def test_an_api_key_keeps_its_grants_through_a_token(secured):
    s = secured
    tok = token(s, "apikey", "registry:catalog:*", "repository:team/app:pull").json()["token"]
    h = {"Authorization": f"Bearer {tok}"}
    r = requests.get(f"{s.url}/v2/_catalog", headers=h)
    assert r.status_code == 200
    assert r.json()["repositories"] == ["public/app", "team/app", "team/other"]
    # Its grants include push on team/**: a token short of it is a scope to fetch, not a denial.
    r = requests.post(f"{s.url}/v2/team/app/blobs/uploads/", headers=h)
    assert r.status_code == 401 and challenge_params(r)["error"] == "insufficient_scope"
    # And outside its grants it is denied as the key it is.
    r = requests.get(f"{s.url}/v2/secret/app/tags/list", headers=h)
    assert r.status_code == 403 and "apikey:ci may not pull on secret/app" in r.text


def test_a_wrong_password_takes_as_long_for_an_unknown_user(tmp_path):
    import bcrypt
    h = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=11)).decode()
    cfg = tmp_path / "wharf.toml"
    cfg.write_text(f"""[auth]
failed_login_limit = 100
[[auth.users]]
name = "alice"
password_hash = "{h}"
""")
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        def median(user):
            times = []
            for i in range(5):
                t = time.perf_counter()
                r = requests.get(f"{s.url}/v2/", auth=(user, f"wrong{i}"))
                times.append(time.perf_counter() - t)
                assert r.status_code == 401
            return sorted(times)[2]
        known, unknown = median("alice"), median("nobody-by-that-name")
        # A cost-11 bcrypt check takes tens of milliseconds; a name lookup microseconds.
        assert known > 0.02, known
        assert 0.5 < unknown / known < 2, (known, unknown)
    finally:
        s.stop()


def test_failed_logins_count_per_forwarded_client_from_trusted_proxies(tmp_path):
    s = Secured(tmp_path / "trusted", "sqlite", auth_extra='trusted_proxies = ["127.0.0.1/32"]')
    try:
        def attempt(xff, password="wrong"):
            return requests.get(f"{s.url}/v2/", auth=("reader", password),
                                headers={"X-Forwarded-For": xff}).status_code
        assert [attempt("203.0.113.7") for _ in range(6)] == [401] * 5 + [429]
        # The same user behind the same proxy, from another client address: not locked out.
        assert attempt("198.51.100.2", PASSWORD) == 200
        # The proxy's own address is skipped: the client is the last untrusted hop.
        assert attempt("203.0.113.7, 127.0.0.1", PASSWORD) == 429
    finally:
        s.server.stop()
    s = Secured(tmp_path / "untrusted", "sqlite")
    try:
        # Without trusted proxies the header is the client's say-so and counts for nothing.
        codes = [requests.get(f"{s.url}/v2/", auth=("reader", "wrong"),
                              headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code
                 for i in range(6)]
        assert codes == [401] * 5 + [429], codes
    finally:
        s.server.stop()


def test_the_realm_is_never_built_from_unchecked_headers(secured):
    s = secured
    for host, proto in [('evil.example"x', None), ("ok.example:5000", 'https",error="x'),
                        ("a,b=c", "http")]:
        headers = {"Host": host}
        if proto:
            headers["X-Forwarded-Proto"] = proto
        r = requests.get(f"{s.url}/v2/team/app/tags/list", headers=headers)
        assert r.status_code == 401
        p = challenge_params(r)
        assert p["realm"] in ("http://localhost/token", "http://ok.example:5000/token"), p
        assert set(p) == {"realm", "service", "scope"}, p
    r = requests.get(f"{s.url}/v2/team/app/tags/list",
                     headers={"Host": "registry.example", "X-Forwarded-Proto": "https"})
    assert challenge_params(r)["realm"] == "https://registry.example/token"


def test_cli_names_the_repository_a_bodiless_refusal_was_about(tmp_path):
    """A push starts with HEADs, whose 403 carries no reason: wharf says which repository
    the credentials were refused for, in one line, with the authorization exit code."""
    cfg = users_config(tmp_path / "wharf.toml", {"alice": "alice-pw"},
                       [(["team/**"], ["alice"], ["pull", "push"])])
    s = start_wharf(tmp_path / "data", config=cfg)
    try:
        f = tmp_path / "a.txt"
        f.write_text("a\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
        env["DOCKER_CONFIG"] = str(tmp_path / "docker")
        run = lambda ref: subprocess.run(  # noqa: E731
            [str(WHARF), "push", "-u", "alice", "-p", "alice-pw", ref, str(f)],
            capture_output=True, text=True, env=env, timeout=60)
        assert run(f"{s.host}/team/app:v1").returncode == 0
        p = run(f"{s.host}/other/app:v1")
        assert p.returncode == 4, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("wharf: error: HEAD "), p.stderr
        assert lines[0].endswith(": 403 DENIED: access to other/app refused for these "
                                 "credentials (a HEAD answer gives no reason)"), p.stderr
    finally:
        s.stop()
