"""The one text cleaner every page uses."""

from __future__ import annotations

import pytest

from txgallery.lib.text import clean_text
from txgallery.limits import MAX_INPUT_CHARS, InputError


@pytest.mark.parametrize("bad, message", [(None, "empty"), ("   \n", "empty"), (42, "must be a string"),
                                          ("\u200b\u200b", "only control or invisible"), ("\x00\x07", "only control")])
def test_unusable_text_is_refused_with_a_reason(bad, message):
    with pytest.raises(InputError, match=message):
        clean_text(bad)


def test_invisible_characters_are_removed_and_counted():
    text, notice = clean_text("good\u200b film\x07\n\tend", what="review")
    assert text == "good film\n\tend" and "Removed 2 control or invisible characters from the review" in notice


def test_long_text_is_cut_with_a_notice():
    text, notice = clean_text("a" * (MAX_INPUT_CHARS + 5))
    assert len(text) == MAX_INPUT_CHARS and f"{MAX_INPUT_CHARS:,}" in notice


def test_letters_can_be_required():
    assert clean_text("🙂🙂")[0] == "🙂🙂"
    with pytest.raises(InputError, match="no letters or digits"):
        clean_text("🙂🙂", need_letters=True)


def test_a_prompt_keeps_its_final_newline_when_asked():
    assert clean_text(" ROMEO:\n", strip=False) == (" ROMEO:\n", None)
    assert clean_text(" ROMEO:\n") == ("ROMEO:", None)
