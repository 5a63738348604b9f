"""Sigstore bundles, as `cosign sign|attest --new-bundle-format` store them (OCI 1.1
referrers holding a DSSE envelope), proven with the real cosign in both directions against
Wharf and Distribution 2.8 and 3 (which have no referrers API: bundles go in the tag-scheme
index there): `wharf sign|attest --bundle` verify with cosign, cosign's bundles
verify with wharf, the referrer manifests of the two tools have the same shape, and the pull
policy counts bundle signatures."""

import base64
import json

from conftest import OCI_MANIFEST, start_wharf
from test_signing import BOM, COSIGN_REG, SPDX, cosign, env, push, registry, wharf  # noqa: F401

BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
# cosign verifies bundles against a trusted root; key-based and offline, an empty one does.
TRUSTED_ROOT = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}


def cosign_new(tmp_path):
    (tmp_path / "root.json").write_text(json.dumps(TRUSTED_ROOT))
    return ["--new-bundle-format", "--trusted-root", "root.json", "--insecure-ignore-tlog",
            *COSIGN_REG]


def bundle_referrers(env, ref):
    """The bundle referrer manifests of `ref`, fetched with wharf."""
    repo = ref.rsplit(":", 1)[0]
    d = json.loads(wharf(env, "discover", "--format", "json", ref).stdout)
    # (the index entry's type is not enough: in the tag-scheme index of a registry without
    # the referrers API, cosign lists a bundle under its config's empty type)
    manifests = [json.loads(wharf(env, "manifest", "fetch", f"{repo}@{m['digest']}").stdout)
                 for m in d["referrers"]]
    return [m for m in manifests if m.get("artifactType") == BUNDLE]


def shape(manifest):
    """A referrer manifest with what differs between two signings (digests, sizes, times)
    taken out."""
    m = json.loads(json.dumps(manifest))
    m["annotations"].pop("org.opencontainers.image.created")
    for layer in m["layers"]:
        layer.pop("digest"), layer.pop("size")
    return m


def test_signature_bundles_both_ways(registry, env, tmp_path):
    digest = push(env, registry, tmp_path)
    ref, at = f"{registry.host}/s/app:v1", f"{registry.host}/s/app@{digest}"
    new = cosign_new(tmp_path)
    wharf(env, "key", "generate", "--output-key-prefix", "w", cwd=tmp_path)
    cosign(env, "generate-key-pair", "--output-key-prefix", "c", cwd=tmp_path)
    # annotations have no place in a bundle signature: refused, in one line
    p = wharf(env, "sign", "--key", "w.key", "--bundle", "-a", "env=prod", ref, cwd=tmp_path,
              check=False)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "carries no annotations" in p.stderr
    p = wharf(env, "sign", "--key", "w.key", "--bundle", ref, cwd=tmp_path)
    assert p.stdout.startswith(f"Signed {at} (signature in {registry.host}/s/app@sha256:")
    # cosign verifies wharf's bundle, and only with wharf's key
    r = cosign(env, "verify", "--key", "w.pub", *new, at, cwd=tmp_path)
    [claims] = json.loads(r.stdout)
    assert claims["critical"]["image"]["docker-manifest-digest"] == digest
    assert claims["critical"]["type"] == SIGN_PREDICATE
    assert cosign(env, "verify", "--key", "c.pub", *new, at, cwd=tmp_path,
                  check=False).returncode != 0
    # cosign signs in a bundle too; the two referrer manifests have the same shape
    cosign(env, "sign", "--new-bundle-format", "--tlog-upload=false", "--key", "c.key", "-y",
           *COSIGN_REG, at, cwd=tmp_path)
    ours, theirs = sorted(bundle_referrers(env, ref),
                          key=lambda m: m["annotations"]["org.opencontainers.image.created"])
    assert shape(ours) == shape(theirs), (ours, theirs)
    assert ours["subject"]["digest"] == digest and ours["artifactType"] == BUNDLE
    assert ours["annotations"]["dev.sigstore.bundle.predicateType"] == SIGN_PREDICATE
    # wharf verifies both, each with its own key, and says why the other does not hold
    for key, fails in (("c.pub", "w.pub"), ("w.pub", "c.pub")):
        p = wharf(env, "verify", "--key", key, ref, cwd=tmp_path)
        assert p.stdout.count(": valid signature") == 1, p.stdout
        assert "the bundle names another signing key" in p.stdout, p.stdout
    # and prints what cosign prints for a bundle signature
    p = wharf(env, "verify", "--key", "c.pub", "--format", "json", ref, cwd=tmp_path)
    r = cosign(env, "verify", "--key", "c.pub", *new, at, cwd=tmp_path)
    assert json.loads(p.stdout) == json.loads(r.stdout), (p.stdout, r.stdout)
    # a bundle carries no annotations, so -a cannot be met by one
    p = wharf(env, "verify", "--key", "c.pub", "-a", "env=prod", ref, cwd=tmp_path,
              check=False)
    assert p.returncode == 5 and "carries no annotations to match -a" in p.stdout + p.stderr


def test_attestation_bundles_both_ways(registry, env, tmp_path):
    digest = push(env, registry, tmp_path)
    ref, at = f"{registry.host}/s/app:v1", f"{registry.host}/s/app@{digest}"
    new = cosign_new(tmp_path)
    (tmp_path / "bom.json").write_text(json.dumps(BOM))
    (tmp_path / "sbom.json").write_text(json.dumps(SPDX))
    cosign(env, "generate-key-pair", cwd=tmp_path)
    wharf(env, "attest", "--key", "cosign.key", "--bundle", "--type", "cyclonedx",
          "--predicate", "bom.json", ref, cwd=tmp_path)
    r = cosign(env, "verify-attestation", "--key", "cosign.pub", "--type", "cyclonedx", *new,
               at, cwd=tmp_path)
    envelope = json.loads(r.stdout.strip().splitlines()[0])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicate"] == BOM
    assert statement["subject"][0]["digest"] == {"sha256": digest.split(":")[1]}
    cosign(env, "attest", "--new-bundle-format", "--tlog-upload=false", "--key", "cosign.key",
           "-y", "--type", "spdxjson", "--predicate", "sbom.json", *COSIGN_REG, at,
           cwd=tmp_path)
    p = wharf(env, "verify-attestation", "--key", "cosign.pub", "--type", "spdxjson", ref,
              cwd=tmp_path)
    assert json.loads(p.stdout) == SPDX, p.stdout
    p = wharf(env, "verify-attestation", "--key", "cosign.pub", "--type", "cyclonedx", ref,
              cwd=tmp_path)
    assert json.loads(p.stdout) == BOM, p.stdout
    # an attestation bundle is no signature, and a signature bundle no attestation
    p = wharf(env, "verify", "--key", "cosign.pub", ref, cwd=tmp_path, check=False)
    assert p.returncode == 5, p.stdout
    wharf(env, "sign", "--key", "cosign.key", "--bundle", ref, cwd=tmp_path)
    p = wharf(env, "verify-attestation", "--key", "cosign.pub", "--type", "vuln", ref,
              cwd=tmp_path, check=False)
    assert p.returncode == 5
    assert "valid signature" not in p.stdout + p.stderr
    # the kinds are told apart by the manifests' annotations
    kinds = {m["annotations"]["dev.sigstore.bundle.predicateType"]
             for m in bundle_referrers(env, ref)}
    assert kinds == {SIGN_PREDICATE, "https://cyclonedx.org/bom", "https://spdx.dev/Document"}


def test_the_pull_policy_counts_bundles(tmp_path, env):
    wharf(env, "key", "generate", "--output-key-prefix", "prod", cwd=tmp_path)
    (tmp_path / "policy.toml").write_text(
        '[[rules]]\nname = "prod"\nrepositories = ["prod/**"]\nkeys = ["prod.pub"]\n'
        'attestations = ["cyclonedx"]\n')
    s = start_wharf(tmp_path / "data", "--pull-policy", tmp_path / "policy.toml")
    try:
        f = tmp_path / "f.txt"
        f.write_text("x")
        digest = wharf(env, "push", f"{s.host}/prod/app:v1", f).stdout.split("Digest: ")[1]
        digest = digest.strip()

        def status():
            return s("GET", "/v2/prod/app/manifests/v1",
                     headers={"Accept": OCI_MANIFEST}).status_code

        assert status() == 403
        # cosign's bundle signing reads the manifest it signs, which the policy refuses while
        # it is unsigned (docs/signing.md); wharf signs from the digest alone
        r = cosign(env, "sign", "--new-bundle-format", "--tlog-upload=false", "--key",
                   "prod.key", "-y", *COSIGN_REG, f"{s.host}/prod/app@{digest}", cwd=tmp_path,
                   check=False)
        assert r.returncode != 0 and 'DENIED: pull policy: rule "prod"' in r.stderr, r.stderr
        wharf(env, "sign", "--key", "prod.key", "--bundle", f"{s.host}/prod/app@{digest}",
              cwd=tmp_path)
        r = s("GET", "/v2/prod/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 403 and "cyclonedx" in r.json()["errors"][0]["message"]
        (tmp_path / "bom.json").write_text(json.dumps(BOM))
        wharf(env, "attest", "--key", "prod.key", "--bundle", "--type", "cyclonedx",
              "--predicate", "bom.json", f"{s.host}/prod/app:v1", cwd=tmp_path)
        assert status() == 200
        # the bundles themselves stay pullable, so cosign verifies against the registry
        assert len(bundle_referrers(env, f"{s.host}/prod/app:v1")) == 2
        cosign(env, "verify", "--key", "prod.pub", *cosign_new(tmp_path),
               f"{s.host}/prod/app@{digest}", cwd=tmp_path)
        p = wharf(env, "verify", "--policy", tmp_path / "policy.toml", f"{s.host}/prod/app:v1")
        assert 'rule "prod" holds' in p.stdout, p.stdout
    finally:
        s.stop()


def test_promote_signs_the_target_with_a_bundle(tmp_path, env):
    s = start_wharf(tmp_path / "data")
    try:
        digest = push(env, s, tmp_path, repo="dev/app")
        wharf(env, "key", "generate", "--output-key-prefix", "prod", cwd=tmp_path)
        src, dst = f"{s.host}/dev/app:v1", f"{s.host}/prod/app:v1"
        # annotations cannot go into a bundle: refused before anything is copied
        p = wharf(env, "promote", "--key", "prod.key", "--bundle", "-a", "stage=prod", src, dst,
                  cwd=tmp_path, check=False)
        assert p.returncode == 1 and "carries no annotations" in p.stderr, p.stderr
        assert s("GET", f"/v2/prod/app/manifests/{digest}",
                 headers={"Accept": OCI_MANIFEST}).status_code == 404
        wharf(env, "promote", "--key", "prod.key", "--bundle", src, dst, cwd=tmp_path)
        [m] = bundle_referrers(env, dst)
        assert m["subject"]["digest"] == digest
        cosign(env, "verify", "--key", "prod.pub", *cosign_new(tmp_path),
               f"{s.host}/prod/app@{digest}", cwd=tmp_path)
    finally:
        s.stop()
