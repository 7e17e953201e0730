"""The Space built and installed as a host does it (`txgallery spaces build`, a fresh venv, `pip install -r
requirements.txt` from the local wheel cache), started in a background thread as soon as the session knows it will
run the Space user path (tests/userpaths/conftest.py): pip's minutes then overlap the tests that run before it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from space_wheelhouse import SYSTEM_PYTHON, default_path
from userpath_actions import OUTSIDE_TEMP


class SpaceInstall:
    """One built and installed Space under a fresh folder of /var/tmp: `space` (the Space folder) and `venv`."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="txgallery-space-test-", dir=OUTSIDE_TEMP))
        self.space, self.venv = self.root / "space", self.root / "venv"
        self.timings: dict[str, float] = {}
        self.failure: str | None = None
        self._thread = threading.Thread(target=self._install, name="space-install", daemon=True)

    def start(self) -> SpaceInstall:
        """Build and install in the background."""
        self._thread.start()
        return self

    def wait(self) -> SpaceInstall:
        """Until the install is done; the failure, if any, is in `failure`."""
        self._thread.join()
        return self

    def remove(self) -> None:
        """Delete the Space folder and its venv."""
        shutil.rmtree(self.root, ignore_errors=True)

    def _step(self, name: str, command: list[str], **kwargs) -> bool:
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, **kwargs)
        self.timings[name] = time.monotonic() - started
        if done.returncode != 0:
            self.failure = f"{name} failed ({' '.join(command)}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        return done.returncode == 0

    def _install(self) -> None:
        wheelhouse = default_path()
        if not any(wheelhouse.glob("gradio-*.whl")):
            self.failure = (f"no local wheel cache for the Space's requirements at {wheelhouse}: with PyPI reachable, "
                            "run `.venv/bin/python tests/userpaths/space_wheelhouse.py` first (the suite has no network)")
            return
        pip_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        pip_env.update(PIP_DISABLE_PIP_VERSION_CHECK="1")
        # the CLI as a user runs it, with this session's own cache folder (never the user's)
        cli_env = {**os.environ, "TXGALLERY_HOME": str(self.root / "txgallery-home")}
        (self._step("txgallery spaces build",
                    [sys.executable, "-m", "txgallery.cli", "spaces", "build", str(self.space)], env=cli_env)
         and self._step("fresh venv", [SYSTEM_PYTHON, "-m", "venv", str(self.venv)])
         # --no-compile: the same install without writing .pyc for every file (Python compiles what it imports)
         and self._step("pip install -r requirements.txt",
                        [str(self.venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile",
                         "--no-index", "--find-links", str(wheelhouse), "-r", "requirements.txt"],
                        cwd=self.space, env=pip_env))


_started: SpaceInstall | None = None


def start_in_background() -> None:
    """Start the build and install now (once per session)."""
    global _started
    _started = _started or SpaceInstall().start()


def take() -> SpaceInstall:
    """The finished install (started now if nothing started it); the caller removes it."""
    global _started
    install, _started = (_started or SpaceInstall().start()).wait(), None
    return install


def discard() -> None:
    """At the end of a session that started an install but never took it."""
    global _started
    if _started is not None:
        _started.wait().remove()
        _started = None
