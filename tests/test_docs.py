"""The copy-paste commands of docs/*.md, run as written (```sh blocks, in order, in one
shell) against a Wharf started here: docs that drift from the code fail here."""

import os
import re
import subprocess

import pytest

from conftest import GO_TOOLS, ROOT, WHARF, start_wharf

PAGES = ["signing.md", "sboms.md", "charts.md", "chart-repository.md", "bundles.md",
         "search.md"]


def sh_blocks(page):
    text = (ROOT / "docs" / page).read_text()
    return re.findall(r"```sh\n(.*?)```", text, re.S)


@pytest.mark.parametrize("page", PAGES)
def test_doc_commands_run(page, tmp_path):
    blocks = sh_blocks(page)
    assert blocks, f"docs/{page} has no sh blocks"
    server = start_wharf(tmp_path / "data")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
        # wharf and the Go tools the pages use beside it (helm, flux), with a home of their own
        env["PATH"] = f"{WHARF.parent}:{GO_TOOLS}:{env['PATH']}"
        env["DOCKER_CONFIG"] = str(tmp_path / "docker")
        env["HOME"] = str(tmp_path / "home")
        env["XDG_CONFIG_HOME"] = str(tmp_path / "home" / ".config")
        env["XDG_CACHE_HOME"] = str(tmp_path / "home" / ".cache")
        work = tmp_path / "work"
        work.mkdir()
        # the page's own `export REGISTRY=localhost:5000` is kept, pointed at this server
        script = "set -euo pipefail\n" + "\n".join(blocks).replace(
            "export REGISTRY=localhost:5000", f"export REGISTRY={server.host}")
        r = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, (r.stdout, r.stderr)
    finally:
        server.stop()
