"""Fill the local wheel cache that the Space user-path test installs the Space's requirements.txt from.

The test runs with no network (a loopback-only namespace), as the whole suite does, yet it must install the Space
exactly as a Space host does: `pip install -r requirements.txt` into a fresh venv. This script, run beforehand with
PyPI reachable, asks pip to resolve that requirements.txt for the system `python3` (the test's venv interpreter) and
puts every distribution of the resolution in one folder: those from PyPI downloaded, those pip found in this
machine's local files (torch and the like) linked. The test then runs
`pip install --no-index --find-links WHEELHOUSE -r requirements.txt`: the same resolution, from local files.

    .venv/bin/python tests/userpaths/space_wheelhouse.py [WHEELHOUSE]

Files already there are kept, so a second run only fetches what changed. The default folder is `default_path()`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

# the system's python3 (Debian's), as a Space host has its own: never this project's .venv
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3") or "python3"


def default_path() -> Path:
    """`$TXGALLERY_SPACE_WHEELHOUSE`, else `~/.cache/txgallery-space-wheelhouse` (outside the repository)."""
    if os.environ.get("TXGALLERY_SPACE_WHEELHOUSE"):
        return Path(os.environ["TXGALLERY_SPACE_WHEELHOUSE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "txgallery-space-wheelhouse"


def fill(wheelhouse: Path, python: str = SYSTEM_PYTHON) -> list[str]:
    """Resolve a freshly built Space's requirements.txt with `python`'s pip and fill `wheelhouse`; returns the
    file names of the resolution (the Space's own wheels excluded: requirements.txt names them by path)."""
    from txgallery.serving.spaces import build_space

    wheelhouse.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="txgallery-wheelhouse-") as tmp:
        space = build_space(Path(tmp) / "space")
        subprocess.run([python, "-m", "venv", str(Path(tmp) / "venv")], check=True)
        report = Path(tmp) / "report.json"
        subprocess.run([str(Path(tmp) / "venv" / "bin" / "python"), "-m", "pip", "install", "--dry-run",
                        "--ignore-installed", "--quiet", "--report", str(report), "-r", "requirements.txt"],
                       cwd=space, check=True)
        names, downloads = [], []
        for item in json.loads(report.read_text())["install"]:
            url = item["download_info"]["url"]
            parsed = urlparse(url)
            if parsed.scheme == "file":
                path = Path(unquote(parsed.path))
                if path.is_relative_to(space):
                    continue
                names.append(path.name)
                link = wheelhouse / path.name
                if not link.exists():
                    link.unlink(missing_ok=True)  # a dangling link from an earlier machine
                    link.symlink_to(path)
            else:
                name = Path(unquote(parsed.path)).name
                names.append(name)
                if not (wheelhouse / name).is_file():
                    hashes = item["download_info"].get("archive_info", {}).get("hashes", {})
                    downloads.append(url.split("#")[0] + (f"#sha256={hashes['sha256']}" if "sha256" in hashes else ""))
        if downloads:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheelhouse),
                            *downloads], check=True)
    return names


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default_path()
    start = time.perf_counter()
    resolved = fill(target)
    print(f"{target}: {len(resolved)} distributions for the Space's requirements.txt "
          f"({time.perf_counter() - start:.0f} s)")
