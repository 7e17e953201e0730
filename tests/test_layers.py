"""The tree's layers, kept by the code: each folder imports only what sits below it (that the core names no demo
at all is `test_plugin.test_the_core_names_no_demo`).

    limits, paths                 the ground every layer may stand on
    lib/                          code two or more demos use; no store, no settings, no serving, no Gradio
    models/                       finding and loading models; no serving, no settings, no gallery, no Gradio
    embedded/                     the shipped models and their recipes; builds on models/
    serving/                      the seam and the runtimes behind it
    core (plugin, gallery, cli…)  the gallery itself; names no demo
    demos/                        pages; never a runtime, never another demo
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE, DEMOS = ROOT / "txgallery", ROOT / "demos"
RUNTIMES = ("txgallery.serving.ray_serve", "txgallery.serving.spaces", "ray", "spaces")

# (importing folder, imported module prefix): what each layer may never import
FORBIDDEN = {
    "lib": ("txgallery.models", "txgallery.embedded", "txgallery.serving", "txgallery.settings", "txgallery.gallery",
            "txgallery.plugin", "txgallery.ui", "gradio", "txgallery_demos"),
    "models": ("txgallery.serving", "txgallery.settings", "txgallery.gallery", "txgallery.plugin", "txgallery.ui",
               "gradio", "txgallery_demos"),
    "embedded": ("txgallery.serving", "txgallery.settings", "txgallery.gallery", "txgallery.plugin", "txgallery.ui",
                 "gradio", "txgallery_demos"),
    "serving": ("txgallery_demos",),
    "core": ("txgallery_demos",),
}
# the one upward import, made on first use: the registry imports the shipped models, which register themselves
ALLOWED = {("txgallery/models/registry.py", "txgallery.embedded")}


def imports(path: Path) -> list[str]:
    """Every module `path` imports, at any depth (function-level imports count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "core"


def breaks(path: Path, forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """'FILE imports MODULE' for each import of `path` that `forbidden` rules out."""
    where = str(path.relative_to(root))
    return [f"{where} imports {name}" for name in imports(path)
            if any(name == f or name.startswith(f + ".") for f in forbidden)
            and not any(where == w and (name == m or name.startswith(m + ".")) for w, m in ALLOWED)]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_sits_below_it(folder):
    files = [p for p in PACKAGE.rglob("*.py") if layer(p) == folder]
    assert files, f"no module in layer {folder}"
    assert [b for p in files for b in breaks(p, FORBIDDEN[folder])] == []


def test_demos_never_import_a_runtime_or_another_demo():
    found = []
    for path in DEMOS.rglob("*.py"):
        own = f"txgallery_demos.{path.relative_to(DEMOS).parts[0]}"
        others = tuple(f"txgallery_demos.{d.name}" for d in DEMOS.iterdir() if d.is_dir() and f"txgallery_demos.{d.name}" != own)
        found += breaks(path, RUNTIMES + others)
    assert found == []


def test_the_rule_checker_sees_a_break(tmp_path):
    """The checker itself: a lib module that imports the store, even inside a function, is reported."""
    bad = tmp_path / "txgallery" / "lib" / "probe.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from txgallery.models import store\n")
    assert breaks(bad, FORBIDDEN["lib"], root=tmp_path) == ["txgallery/lib/probe.py imports txgallery.models",
                                                             "txgallery/lib/probe.py imports txgallery.models.store"]


@pytest.mark.parametrize("run", sorted(DEMOS.glob("*/run.py")), ids=lambda p: p.parent.name)
def test_every_build_fits_one_screen(run):
    """A page's `build(ctx)` wires panels and events that are written elsewhere in its run.py (about 60 lines at most)."""
    (build,) = [n for n in ast.parse(run.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == "build"]
    assert build.end_lineno - build.lineno + 1 <= 60


def test_the_entry_points_import_no_torch():
    """The CLI, the Space app and each Ray replica set OpenMP's wait policy before torch is imported (torch reads it
    once): importing them must not import torch (BENCHMARKS.md, "Threads")."""
    import subprocess
    import sys

    probe = ("import sys, txgallery, txgallery.cli, txgallery.serving.ray_serve, txgallery.serving.spaces; "
             "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"
