"""The Space user path's build and pip install start in the background once collection shows the Space tests will
run (they run last, so pip's minutes overlap the tests before them)."""

from __future__ import annotations

import space_install


def pytest_collection_finish(session) -> None:
    if any(item.path.name == "test_space.py" for item in session.items):
        space_install.start_in_background()


def pytest_sessionfinish(session) -> None:
    space_install.discard()
