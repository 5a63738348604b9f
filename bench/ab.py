"""A/B of two wharf binaries on the hottest path: manifest GET by digest of a small
manifest, wrk with 16 connections, rounds in turns (the median round counts), the second
binary also with its access log off. For before/after figures of a change:

    cargo build --release && cp target/release/wharf /tmp/wharf-after
    git stash && cargo build --release && cp target/release/wharf /tmp/wharf-before && git stash pop
    .venv/bin/python bench/ab.py /tmp/wharf-before /tmp/wharf-after
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

import conftest  # noqa: E402
from common import print_median_table, wrk_with_headers  # noqa: E402

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def main(before, after, rounds=4, seconds=5):
    work = Path(tempfile.mkdtemp(prefix="wharf-ab-"))
    conftest.WHARF = Path(before)
    s = conftest.start_wharf(work / "data")
    cfg = s.push_blob("b/x", b"{}")
    digest = s.push_manifest("b/x", "v1", {
        "schemaVersion": 2, "mediaType": ACCEPT,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg,
                   "size": 2}, "layers": []})
    s.stop()
    runs = {}
    for _ in range(rounds):
        for name, binary, extra in (("before", before, ""), ("after", after, ""),
                                    ("after, access log off", after, ",wharf::access=off")):
            conftest.WHARF = Path(binary)
            s = conftest.start_wharf(work / "data", env={"WHARF_LOG": "warn,wharf=info" + extra})
            try:
                runs.setdefault(name, []).append(wrk_with_headers(
                    s, f"{s.url}/v2/b/x/manifests/{digest}", {"Accept": ACCEPT}, 16, seconds,
                    work / "get.lua"))
            finally:
                s.stop()
    print_median_table(runs)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
