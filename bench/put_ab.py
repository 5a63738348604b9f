"""A/B of two wharf binaries on the write path: manifest PUT under a new tag each request
(wrk, 8 connections, embedded default), rounds in turns, the median round counts. The
second binary also runs with a quota on the namespace pushed to and with a webhook
endpoint (a local receiver that answers 200), so their cost shows beside the plain path.

    cargo build --release && cp target/release/wharf /tmp/wharf-after
    git worktree add /tmp/before-src BEFORE_COMMIT
    (cd /tmp/before-src && CARGO_TARGET_DIR=target-before cargo build --release)
    .venv/bin/python bench/put_ab.py /tmp/before-src/target-before/release/wharf /tmp/wharf-after
"""

import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

import conftest  # noqa: E402
from common import print_median_table, push_small_image, wrk  # noqa: E402


class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main(before, after, rounds=4, seconds=5):
    work = Path(tempfile.mkdtemp(prefix="wharf-put-ab-"))
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/"
    configs = {
        "before": (before, ""),
        "after": (after, ""),
        "after, quota on the namespace": (
            after, '[[quotas]]\nnamespace = "bench"\nlimit_bytes = 1099511627776\n'),
        "after, a webhook": (after, f'[[webhooks]]\nname = "bench"\nurl = "{hook}"\n'),
    }
    runs = {}
    for _ in range(rounds):
        for name, (binary, text) in configs.items():
            conftest.WHARF = Path(binary)
            cfg = work / "wharf.toml"
            cfg.write_text(text)
            data = work / "data"
            s = conftest.start_wharf(data, config=cfg, env={"WHARF_LOG": "warn,wharf::serve=info"})
            try:
                manifest, _ = push_small_image(s.url, "bench/put", "seed")
                mf = work / "manifest.json"
                mf.write_bytes(manifest)
                runs.setdefault(name, []).append(
                    wrk(s, s.url, 8, seconds, "put_manifest.lua", {"MANIFEST_FILE": str(mf)}))
            finally:
                s.stop()
            shutil.rmtree(data, ignore_errors=True)
    receiver.shutdown()
    print_median_table(runs)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
