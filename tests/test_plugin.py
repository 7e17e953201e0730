"""Plugin discovery through entry points, and broken plugins contained as error entries."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import httpx
import pytest

from txgallery import gallery
from txgallery.gallery import build_gallery, landing_html
from txgallery.plugin import Demo, DemoEntry, build_entry, discover_demos

GOOD_PLUGIN = """
import gradio as gr
from txgallery import Demo

def build():
    with gr.Blocks() as page:
        gr.Markdown("hello from a third-party plugin")
    return page

demo = Demo(slug="thirdparty_hello", title="Third-party hello", description="Added by another distribution.",
            build=build, tags=("example",), topic="plugins")
"""


def test_shipped_sentiment_demo_is_discovered():
    entries = {e.slug: e for e in discover_demos()}
    assert entries["sentiment"].ok, entries["sentiment"].error
    assert isinstance(entries["sentiment"].demo, Demo)
    assert "txgallery" in entries["sentiment"].origin


def test_third_party_distribution_adds_a_demo(plugin_dist):
    plugin_dist("thirdparty_hello", GOOD_PLUGIN)
    entries = {e.slug: e for e in discover_demos()}
    assert entries["thirdparty_hello"].ok
    assert "thirdparty_hello 0.1" in entries["thirdparty_hello"].origin
    assert 'href="thirdparty_hello"' in landing_html(list(entries.values()))


def test_plugin_that_fails_to_import_becomes_an_error_entry(plugin_dist):
    plugin_dist("thirdparty_broken", "raise ImportError('needs the package frobnicate')\n")
    entries = {e.name: e for e in discover_demos()}
    broken = entries["thirdparty_broken"]
    assert not broken.ok
    assert "frobnicate" in broken.error
    assert entries["sentiment"].ok  # the rest is untouched
    html = landing_html(list(entries.values()))
    assert "tx-broken" in html and "frobnicate" in html


def test_plugin_that_is_not_a_demo_is_rejected(plugin_dist):
    plugin_dist("thirdparty_wrong", "demo = 42\n")
    broken = {e.name: e for e in discover_demos()}["thirdparty_wrong"]
    assert not broken.ok and "txgallery.Demo" in broken.error


def test_plugin_whose_build_fails_gets_an_error_page_and_the_gallery_still_builds(plugin_dist):
    plugin_dist("thirdparty_badbuild", GOOD_PLUGIN.replace('gr.Markdown("hello from a third-party plugin")',
                                                          "raise RuntimeError('no GPU here')").replace(
        "thirdparty_hello", "thirdparty_badbuild"))
    entries = discover_demos()
    bad = next(e for e in entries if e.slug == "thirdparty_badbuild")
    assert bad.ok  # imported fine...
    assert build_entry(bad) is None and "no GPU here" in bad.error  # ...but its build failed, recorded
    app = build_gallery(entries)  # and the gallery is still built, with a page per demo
    assert {"thirdparty_badbuild", "sentiment"} <= {route for route, *_ in app.pages}
    assert "no GPU here" in landing_html(entries)  # its card says why


def test_only_filter_and_missing_demo():
    entries = discover_demos(only=["sentiment", "does_not_exist"])
    assert [e.slug for e in entries if e.ok] == ["sentiment"]
    missing = next(e for e in entries if e.name == "does_not_exist")
    assert "no demo named" in missing.error


def test_txgallery_list_shows_broken_plugins(plugin_dist, txgallery):
    plugin_dist("thirdparty_broken", "raise ImportError('needs the package frobnicate')\n")
    plugin_dist("thirdparty_badbuild", GOOD_PLUGIN.replace(
        'gr.Markdown("hello from a third-party plugin")', "raise RuntimeError('no GPU here')").replace(
        "thirdparty_hello", "thirdparty_badbuild"))
    status, out, err = txgallery("list")
    assert status == 0, err
    assert "sentiment" in out and "ok" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "BROKEN" in lines["thirdparty_broken"] and "frobnicate" in lines["thirdparty_broken"]
    assert "BROKEN" in lines["thirdparty_badbuild"] and "no GPU here" in lines["thirdparty_badbuild"]
    assert " ok " in lines["sentiment"]


def test_readme_plugin_example_installs_and_appears(tmp_path, monkeypatch):
    """The README's plugin example is a real distribution: pip-install it and the gallery shows it."""
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), "examples/hello_plugin"],
                          capture_output=True, text=True, timeout=300,
                          cwd=__import__("pathlib").Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    monkeypatch.syspath_prepend(str(target))
    __import__("importlib").invalidate_caches()
    entries = {e.slug: e for e in discover_demos()}
    assert entries["hello"].ok, entries["hello"].error
    assert "txgallery-hello 0.1.0" in entries["hello"].origin or "txgallery_hello 0.1.0" in entries["hello"].origin
    from txgallery_hello import TokenCounter

    from txgallery.models.store import resolve

    assert TokenCounter(resolve("embedded", "feature-extraction")).count("unbelievably good")["count"] >= 2
    assert build_entry(entries["hello"]) is not None


def test_two_plugins_with_one_slug(plugin_dist):
    plugin_dist("thirdparty_hello", GOOD_PLUGIN)
    plugin_dist("thirdparty_twin", GOOD_PLUGIN)  # declares the same slug "thirdparty_hello"
    entries = [e for e in discover_demos() if e.name in ("thirdparty_hello", "thirdparty_twin")]
    assert [e.ok for e in entries] == [True, False]
    assert "already used by thirdparty_hello:demo" in entries[1].error


@pytest.mark.parametrize("user_value, expected", [(None, gallery.ANALYTICS_EVERY), ("7", 7), ("1", 1)])
def test_gallery_queue_refreshes_gradios_monitoring_summary_only_every_so_often(monkeypatch, user_value, expected):
    if user_value is None:
        monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", raising=False)
    else:  # the user's own setting is kept ("1": Gradio's default, a pandas pass after every event)
        monkeypatch.setenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", user_value)
    with gr.Blocks() as app:
        gr.api(gallery.ping, api_name="ping")
    queue = gallery.queue(app)._queue
    event = {"time": 0.0, "status": "success", "function": "ping", "process_time": 0.01, "session_hash": "a"}
    queue.events_recorded = expected  # as many events as one refresh waits for
    first = queue.compute_analytics_summary([event])
    assert first["functions"]["ping"]["success_rate"] == 1.0
    queue.events_recorded += 1  # one event more
    second = queue.compute_analytics_summary([event, {**event, "status": "failed"}])
    assert (second is first) == (expected > 1)


def test_a_demo_runs_alone_from_its_file(tmp_path):
    """`python demos/NAME/run.py` serves that demo by itself, as Gradio's own demo folder does."""
    from support import free_port

    port = free_port()
    run_py = Path(__file__).resolve().parents[1] / "demos" / "seq2seq" / "run.py"
    server = subprocess.Popen([sys.executable, str(run_py)], cwd=tmp_path, env={**os.environ,
                              "GRADIO_SERVER_PORT": str(port)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/config", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert server.poll() is None, server.stderr.read().decode()[-2000:]
        assert page.status_code == 200 and "seq2seq_generate" in page.text
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_landing_page_and_the_pages_follow_the_lesson():
    """Cards in the lesson's order (attention, encoder, decoder, encoder–decoder, ViT, CLIP, fine-tuning, efficiency)
    with "Start here" on the first; each page ends with a link to the next one, the last with none."""
    import re

    entries = discover_demos()
    lesson = ["attention", "sentiment", "generation", "seq2seq", "vit", "clip", "finetune", "efficiency"]
    landing = landing_html(entries + [DemoEntry(name="broken", origin="test", error="ImportError: x")])
    assert re.findall(r'data-demo="([a-z0-9_]+)"', landing) == [*lesson, "broken"]
    assert landing.count("Start here") == 1 and landing.index("Start here") < landing.index('data-demo="sentiment"')
    config = build_gallery(entries).config
    nexts = [c["props"]["value"] for c in config["components"] if "tx-next" in (c["props"].get("elem_classes") or [])]
    assert [re.search(r"\]\(([a-z0-9_]+)\)", text).group(1) for text in nexts] == lesson[1:]


def _code_names(tree: ast.AST) -> set[str]:
    """Identifiers, imported modules and non-docstring strings of a module."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            names.add(node.value)
    return names


def test_the_core_names_no_demo():
    """Nothing in txgallery/ names a demo's package or its classes in code: demos plug in through entry points and
    declare what the core needs (for example `batched_methods` on a service class)."""
    import txgallery

    core = {path: ast.parse(path.read_text()) for path in Path(txgallery.__file__).parent.rglob("*.py")}
    core_classes = {node.name for tree in core.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    demo_files = {file for entry in importlib.metadata.entry_points(group="txgallery.demos")
                  for file in Path(sys.modules[entry.load().build.__module__].__file__).parent.glob("*.py")}
    demo_classes = {node.name for file in demo_files for node in ast.walk(ast.parse(Path(file).read_text()))
                    if isinstance(node, ast.ClassDef)} - core_classes
    assert {"SentimentClassifier", "ClipMatcher", "ImageService"} <= demo_classes
    named = {path.name: sorted(hits) for path, tree in core.items()
             if (hits := {name for name in _code_names(tree) if "txgallery_demos" in name
                          or any(cls == name or f":{cls}" in name for cls in demo_classes)})}
    assert not named, named
