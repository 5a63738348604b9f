"""Signing benchmark: `wharf sign`, `verify` and `attest` beside `cosign` (key-based, no
transparency log, the same key file and registry for both), verifying an artifact with 100
signatures, and manifest GET throughput of a Wharf with the pull policy on beside one
without. Writes the signing section of bench/RESULTS.md. Run it with `bench/run --signing`."""

import json
import os
import subprocess
import time

from common import run_section, wrk_with_headers
from conftest import WHARF, go_tool, start_wharf

RUNS = 5
CONNECTIONS = 16
ACCEPT = "application/vnd.oci.image.manifest.v1+json"
COSIGN_REG = ["--allow-insecure-registry", "--allow-http-registry"]


def median(xs):
    return sorted(xs)[len(xs) // 2]


class Bench:
    def __init__(self, work):
        self.work = work
        home = work / "home"
        home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
        self.env.update({"HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"),
                         "COSIGN_PASSWORD": "bench"})

    def run(self, *cmd):
        r = subprocess.run([str(c) for c in cmd], cwd=self.work, env=self.env,
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd}: {r.stderr}")
        return r.stdout

    def timed(self, *cmd):
        t0 = time.perf_counter()
        self.run(*cmd)
        return time.perf_counter() - t0

    def push(self, ref, text):
        f = self.work / "f.txt"
        f.write_text(text)
        out = self.run(WHARF, "push", "-q", ref, f)
        return out.split("Digest: ")[1].strip()


def get_throughput(server, path, seconds, script):
    return wrk_with_headers(server, server.url + path, {"Accept": ACCEPT}, CONNECTIONS,
                            seconds, script)


def measure(work, quick):
    b = Bench(work)
    runs = 2 if quick else RUNS
    cosign = go_tool("cosign")
    b.run(cosign, "generate-key-pair")
    (work / "bom.json").write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5",
                                               "version": 1, "components": []}))
    r = {}
    s = start_wharf(work / "data", env={"WHARF_LOG": "warn,wharf=info"})
    try:
        h = s.host
        # Each run signs and attests an artifact nobody signed before.
        digests = {tool: [b.push(f"{h}/b/{tool}:{i}", f"{tool} {i}") for i in range(runs)]
                   for tool in ("wharf", "cosign")}
        ops = {"sign": {}, "verify": {}, "attest": {}}
        ops["sign"]["wharf"] = median([b.timed(WHARF, "sign", "--key", "cosign.key",
                                               f"{h}/b/wharf@{d}") for d in digests["wharf"]])
        ops["sign"]["cosign"] = median([b.timed(cosign, "sign", "--key", "cosign.key",
                                                "--tlog-upload=false", "-y", *COSIGN_REG,
                                                f"{h}/b/cosign@{d}") for d in digests["cosign"]])
        ops["verify"]["wharf"] = median([b.timed(WHARF, "verify", "--key", "cosign.pub",
                                                 f"{h}/b/wharf@{d}") for d in digests["wharf"]])
        ops["verify"]["cosign"] = median([b.timed(cosign, "verify", "--key", "cosign.pub",
                                                  "--insecure-ignore-tlog", *COSIGN_REG,
                                                  f"{h}/b/cosign@{d}")
                                          for d in digests["cosign"]])
        ops["attest"]["wharf"] = median([b.timed(WHARF, "attest", "--key", "cosign.key", "--type",
                                                 "cyclonedx", "--predicate", "bom.json",
                                                 f"{h}/b/wharf@{d}") for d in digests["wharf"]])
        ops["attest"]["cosign"] = median([b.timed(cosign, "attest", "--key", "cosign.key",
                                                  "--type", "cyclonedx", "--predicate",
                                                  "bom.json", "--tlog-upload=false", "-y",
                                                  *COSIGN_REG, f"{h}/b/cosign@{d}")
                                          for d in digests["cosign"]])
        # Sigstore bundles (cosign's --new-bundle-format): signing, and verifying one, which
        # cosign does against a trusted root (an empty one, key-based and offline).
        (work / "root.json").write_text(json.dumps(
            {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}))
        bundled = {tool: [b.push(f"{h}/b/{tool}-bundle:{i}", f"{tool} bundle {i}")
                          for i in range(runs)] for tool in ("wharf", "cosign")}
        ops["sign, Sigstore bundle"] = {
            "wharf": median([b.timed(WHARF, "sign", "--key", "cosign.key", "--bundle",
                                     f"{h}/b/wharf-bundle@{d}") for d in bundled["wharf"]]),
            "cosign": median([b.timed(cosign, "sign", "--new-bundle-format", "--key",
                                      "cosign.key", "--tlog-upload=false", "-y", *COSIGN_REG,
                                      f"{h}/b/cosign-bundle@{d}") for d in bundled["cosign"]]),
        }
        ops["verify, Sigstore bundle"] = {
            "wharf": median([b.timed(WHARF, "verify", "--key", "cosign.pub",
                                     f"{h}/b/wharf-bundle@{d}") for d in bundled["wharf"]]),
            "cosign": median([b.timed(cosign, "verify", "--new-bundle-format", "--trusted-root",
                                      "root.json", "--key", "cosign.pub",
                                      "--insecure-ignore-tlog", *COSIGN_REG,
                                      f"{h}/b/cosign-bundle@{d}") for d in bundled["cosign"]]),
        }
        # One artifact with 100 signatures (distinct payloads: an annotation each).
        many = b.push(f"{h}/b/many:v1", "many")
        for i in range(100):
            b.run(WHARF, "sign", "--key", "cosign.key", "-a", f"n={i}", f"{h}/b/many@{many}")
        ops["verify 100 signatures"] = {
            "wharf": median([b.timed(WHARF, "verify", "--key", "cosign.pub", f"{h}/b/many@{many}")
                             for _ in range(runs)]),
            "cosign": median([b.timed(cosign, "verify", "--key", "cosign.pub",
                                      "--insecure-ignore-tlog", *COSIGN_REG,
                                      f"{h}/b/many@{many}") for _ in range(runs)]),
        }
        r["ops_s"] = ops
        # The floor under sign and attest: opening the key file is one scrypt derivation at
        # cosign's cost, which both tools must do (OpenSSL's, through Python, as a referee).
        import hashlib

        def kdf():
            t0 = time.perf_counter()
            hashlib.scrypt(b"bench", salt=b"s" * 32, n=1 << 16, r=8, p=1,
                           maxmem=256 << 20, dklen=32)
            return time.perf_counter() - t0
        r["scrypt_s"] = median([kdf() for _ in range(runs)])
        # A signed manifest, served by the same data with the pull policy off, then on.
        signed = digests["wharf"][0]
    finally:
        s.stop()
    (work / "policy.toml").write_text(
        '[[rules]]\nname = "bench"\nrepositories = ["b/**"]\nkeys = ["cosign.pub"]\n')
    seconds = 3 if quick else 8
    script = work / "get.lua"
    path = f"/v2/b/wharf/manifests/{signed}"
    # Off and on take turns (3 rounds each), each on a fresh start of the same data, and the
    # median round of each counts: one round apart, the machine drifts more than the policy.
    samples = {"off": [], "on": []}
    for _ in range(1 if quick else 3):
        for name, extra in (("off", []), ("on", ["--pull-policy", str(work / "policy.toml")])):
            s = start_wharf(work / "data", *extra, env={"WHARF_LOG": "warn,wharf=info"})
            try:
                samples[name].append(get_throughput(s, path, seconds, script))
            finally:
                s.stop()
    r["policy_get"] = {k: sorted(v, key=lambda x: x["ops_s"])[len(v) // 2]
                       for k, v in samples.items()}
    return r


def report(r, quick, elapsed):
    lines = [
        "## Signing: wharf against cosign, and the pull policy",
        "",
        f"Reproduce: `bench/run --signing{' --quick' if quick else ''}` (took {elapsed:.0f} s). "
        "One Wharf (embedded default) on this machine; both tools use the same key file "
        "(made by `cosign generate-key-pair`, so each decrypts it with scrypt at N = 2^16 on "
        "every command) and sign, verify and attest artifacts of their own, key-based with no "
        "transparency log (`--tlog-upload=false`, `--insecure-ignore-tlog`), in the classic "
        "format and in Sigstore bundles (`--bundle`; cosign's `--new-bundle-format`, verified "
        "against an empty trusted root). Seconds are "
        f"the median of {2 if quick else RUNS} runs of the whole command. cosign is 2.6.5, "
        "built by tests/setup.",
        "",
        "",
        "Signing and attesting start by opening the encrypted key: one scrypt derivation at "
        f"N = 2^16, r = 8 (64 MiB of memory-hard work; {r['scrypt_s']:.3f} s for OpenSSL's "
        "scrypt in the same run), which neither tool can skip; that bounds the ratio for "
        "sign and attest.",
        "",
        "| operation | wharf (s) | cosign (s) | wharf vs cosign |",
        "| --- | ---: | ---: | ---: |",
    ]
    for op, t in r["ops_s"].items():
        lines.append(f"| {op} | {t['wharf']:.3f} | {t['cosign']:.3f} | "
                     f"{t['cosign'] / t['wharf']:.1f}x |")
    off, on = r["policy_get"]["off"], r["policy_get"]["on"]
    lines += [
        "",
        f"Manifest GET by digest of a signed manifest, wrk with {CONNECTIONS} connections: the "
        "pull policy off and on in turns, the median of 3 rounds each (one rule, one key). Decisions are cached per digest; a "
        "manifest write through this replica invalidates its repository's at once, and the "
        "evidence's fingerprint is looked at again every 5 s for writes through others.",
        "",
        "| pull policy | ops/s | p99 (ms) | server CPU per op (ms) |",
        "| --- | ---: | ---: | ---: |",
        f"| off | {off['ops_s']:.0f} | {off['p99_ms']:.2f} | {off['cpu_ms_per_op']:.3f} |",
        f"| on | {on['ops_s']:.0f} | {on['p99_ms']:.2f} | {on['cpu_ms_per_op']:.3f} |",
        "",
        f"With the policy on, throughput is {on['ops_s'] / off['ops_s'] * 100:.0f}% of off.",
    ]
    return "\n".join(lines) + "\n"


def main(quick, out):
    run_section("signing", "signing", measure, report, quick, out)
