"""Every entry of the bad-input catalogue, sent to the running gallery: the user gets the catalogued message."""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_input_catalogue import CATALOGUE, markdown
from gradio_client import Client
from gradio_client.exceptions import AppError

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[1] / "docs" / "BAD_INPUTS.md"


@pytest.fixture(scope="module")
def client(gallery) -> Client:
    return Client(gallery, verbose=False)


@pytest.mark.parametrize("bad", CATALOGUE, ids=[b.id for b in CATALOGUE])
def test_bad_input_gets_its_message(client, bad, tmp_path):
    args = bad.args(tmp_path) if callable(bad.args) else bad.args
    with pytest.raises(AppError) as raised:
        client.predict(*args, api_name=f"/{bad.api_name}")
    assert bad.message in str(raised.value)
    assert "Traceback" not in str(raised.value)


def test_the_queue_still_answers_after_the_catalogue(client):
    assert client.predict("still here", api_name="/ping") == "still here"


def test_the_catalogue_covers_the_gallery_and_its_document_is_current():
    from txgallery.plugin import discover_demos

    assert len(CATALOGUE) >= 40
    slugs = {e.slug for e in discover_demos() if e.ok}
    assert slugs - {b.demo for b in CATALOGUE} == set(), "every demo has bad inputs in the catalogue"
    assert DOC.read_text() == markdown(), "regenerate docs/BAD_INPUTS.md (see tests/bad_input_catalogue.py)"
