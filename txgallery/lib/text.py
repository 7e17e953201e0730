"""Text from users, checked once for every page: empty, not a string, invisible characters, too long."""

from __future__ import annotations

import unicodedata

from txgallery.limits import MAX_INPUT_CHARS, InputError, truncate_text

_KEEP = "\n\t"  # control characters that are layout, not noise
_INVISIBLE = ("Cc", "Cf", "Cs", "Co")  # control, format (zero-width…), surrogate and private-use characters


def clean_text(text: object, what: str = "text", need_letters: bool = False, limit: int = MAX_INPUT_CHARS,
               strip: bool = True) -> tuple[str, str | None]:
    """`text` stripped of invisible characters and cut to `limit`, with a notice of what changed (or `InputError`).

    `need_letters` refuses text with no letter or digit (emoji or symbols alone give a model only unknown tokens);
    `strip=False` keeps leading and trailing whitespace (a prompt's final newline tells a decoder what comes next).
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        raise InputError(f"Please enter some {what}: the input is empty.")
    if not isinstance(text, str):  # an API call that is not the page's textbox
        raise InputError(f"The {what} must be a string, not {type(text).__name__}.")
    notices = []
    cleaned = "".join(c for c in text if c in _KEEP or unicodedata.category(c) not in _INVISIBLE)
    if removed := len(text) - len(cleaned):
        notices.append(f"Removed {removed} control or invisible character{'s' if removed > 1 else ''} from the {what}.")
    if not cleaned.strip():
        raise InputError(f"The {what} has only control or invisible characters in it; please type some text.")
    if need_letters and not any(ch.isalnum() for ch in cleaned):
        raise InputError(f"The {what} has no letters or digits (emoji and symbols alone give the model only "
                         f"unknown tokens); type a sentence.")
    cleaned, cut = truncate_text(cleaned, limit)  # the notice counts the characters as typed
    if cut:
        notices.append(cut)
    return cleaned.strip() if strip else cleaned, " ".join(notices) or None
