"""The `txgallery` command line: help everywhere, model checks with clear messages, bad settings."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "txgallery.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("command", [[], ["serve"], ["list"], ["train"]])
def test_help_everywhere(command):
    done = run(*command, "--help")
    assert done.returncode == 0 and "usage: txgallery" in done.stdout


def test_unknown_hub_model_is_reported_by_the_cli_with_the_embedded_default():
    done = run("--log-level", "error", "list", "--models", "--model", "sentiment=no-such-org/no-such-model")
    assert done.returncode == 1
    assert "sentiment: ERROR" in done.stdout and "no-such-org/no-such-model" in done.stdout
    assert "embedded default" in done.stdout and "minilm-rt-sentiment" in done.stdout


def test_embedded_model_loads_from_the_cli():
    done = run("--log-level", "error", "list", "--models")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sentiment: loaded minilm-rt-sentiment (embedded" in done.stdout


def test_bad_model_flag_is_a_usage_error():
    done = run("list", "--models", "--model", "sentiment")
    assert done.returncode == 2 and "expected SLUG=MODEL" in done.stderr


def test_limits_command_prints_every_limit_and_the_readme_has_them(capsys):
    from pathlib import Path

    from txgallery.cli import main
    from txgallery.limits import limits_markdown, limits_table

    assert main(["limits"]) == 0
    printed = capsys.readouterr().out
    assert all(f"`{name}`" in printed for _, name, _, _ in limits_table())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert limits_markdown() in readme, "README's limits table is out of date: paste `txgallery limits` into it"
