"""The `txgallery` command line: help everywhere, model checks with clear messages, bad settings.

The commands run in this process through `txgallery.cli.main`; one test runs the installed console script, so that
the entry point and its exit status stay covered.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [[], ["serve"], ["list"], ["train"], ["limits"], ["ray"], ["spaces"]])
def test_help_everywhere(txgallery, command):
    status, out, _ = txgallery(*command, "--help")
    assert status == 0 and "usage: txgallery" in out


def test_unknown_hub_model_is_reported_by_the_cli_with_the_embedded_default(txgallery):
    status, out, _ = txgallery("--log-level", "error", "list", "--demo", "sentiment", "--models", "--model",
                               "sentiment=no-such-org/no-such-model")
    assert status == 1
    assert "sentiment: ERROR" in out and "no-such-org/no-such-model" in out
    assert "embedded default" in out and "minilm-rt-sentiment" in out


def test_embedded_model_loads_from_the_cli(txgallery):
    status, out, err = txgallery("--log-level", "error", "list", "--demo", "sentiment", "--models")
    assert status == 0, out + err
    assert "sentiment: loaded minilm-rt-sentiment (embedded" in out and "attention" not in out


def test_bad_model_flag_is_a_usage_error_of_the_console_script():
    """The installed `txgallery` script: its entry point reaches main(), whose exit status and message come back."""
    script = Path(sys.executable).parent / "txgallery"
    done = subprocess.run([str(script), "list", "--models", "--model", "sentiment"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "expected SLUG=MODEL" in done.stderr, done.stdout + done.stderr


def test_limits_command_prints_every_limit_and_the_readme_has_them(txgallery):
    from txgallery.limits import limits_markdown, limits_table

    status, printed, _ = txgallery("limits")
    assert status == 0
    assert all(f"`{name}`" in printed for _, name, _, _ in limits_table())
    readme = (ROOT / "README.md").read_text()
    assert limits_markdown() in readme, "README's limits table is out of date: paste `txgallery limits` into it"


def test_serve_with_mcp_but_without_the_mcp_package_says_how_to_install_it(txgallery, monkeypatch):
    monkeypatch.setitem(sys.modules, "mcp", None)  # what an install without the extra finds
    status, _, err = txgallery("serve", "--mcp", "--demo", "sentiment")
    assert status == 2 and "--mcp needs the MCP package" in err and "txgallery[mcp]" in err
