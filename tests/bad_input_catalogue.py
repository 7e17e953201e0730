"""The catalogue of bad inputs across the gallery: what a user sends, and the message they see.

Each entry is a test (`tests/test_bad_inputs.py` sends it to a running gallery over HTTP) and a row of
`docs/BAD_INPUTS.md`, which this module writes:

    .venv/bin/python tests/bad_input_catalogue.py > docs/BAD_INPUTS.md
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

Args = tuple | Callable[[Path], tuple]  # a callable builds files in a temporary directory first


@dataclass(frozen=True)
class BadInput:
    """One bad input: the demo and endpoint, what is wrong, the arguments, and a substring of the user's message."""

    demo: str
    what: str
    api_name: str
    args: Args
    message: str

    @property
    def id(self) -> str:
        return f"{self.demo}: {self.what}"


def _file(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(directory: Path) -> Path:
        path = directory / name
        path.write_bytes(content)
        return path

    return make


def _upload(*parts) -> Callable[[Path], tuple]:
    """Arguments where callables are files to create and upload."""

    def make(directory: Path) -> tuple:
        from gradio_client import handle_file

        return tuple(handle_file(str(p(directory))) if callable(p) else p for p in parts)

    return make


CATALOGUE: list[BadInput] = [
    # --- sentiment ---
    BadInput("sentiment", "empty text", "sentiment_predict", ("",), "the input is empty"),
    BadInput("sentiment", "only whitespace", "sentiment_predict", ("   \n\t ",), "the input is empty"),
    BadInput("sentiment", "empty batch", "sentiment_batch", ("", None), "Paste one text per line"),
    BadInput("sentiment", "batch above the cap (501 lines)", "sentiment_batch", ("x\n" * 501, None), "the limit is 500"),
    BadInput("sentiment", "CSV without a text column", "sentiment_batch",
             _upload("", _file("reviews.csv", b"id,body\n1,fine\n")), "needs a column named"),
    BadInput("sentiment", "binary file named .csv", "sentiment_batch",
             _upload("", _file("blob.csv", b"\x00\x01\x02" * 100)), "looks like a binary file"),
    BadInput("sentiment", "CSV that is not UTF-8", "sentiment_batch",
             _upload("", _file("latin1.csv", "text\ncafé crème\n".encode("latin-1"))), "is not UTF-8"),
    BadInput("sentiment", "CSV whose text column is empty", "sentiment_batch",
             _upload("", _file("blank.csv", b"text\n\n \n")), "has no text in it"),
    # --- efficiency ---
    BadInput("efficiency", "pruning sparsity 1.0", "efficiency_measure", (["pruning"], 1.0, False),
             "greater than maximum value"),
    BadInput("efficiency", "negative pruning sparsity", "efficiency_measure", (["pruning"], -0.2, True),
             "less than minimum value"),
    BadInput("efficiency", "100,000 distillation steps", "efficiency_distil", (2, 100_000, 2.0, 0.7),
             "greater than maximum value 600"),
    BadInput("efficiency", "a 9-layer student", "efficiency_distil", (9, 100, 2.0, 0.7), "greater than maximum value"),
]


def markdown() -> str:
    """The catalogue as a Markdown document."""
    lines = ["# Bad inputs and what users see", "",
             "Every row is a test (`tests/test_bad_inputs.py`): the input is sent to a running gallery over HTTP and",
             "the user's message must contain the quoted text. Regenerate with",
             "`.venv/bin/python tests/bad_input_catalogue.py > docs/BAD_INPUTS.md`.", "",
             f"{len(CATALOGUE)} bad inputs across {len({b.demo for b in CATALOGUE})} demos.", "",
             "| demo | bad input | endpoint | the message contains |", "|---|---|---|---|"]
    for bad in CATALOGUE:
        lines.append(f"| {bad.demo} | {bad.what} | `/{bad.api_name}` | “{bad.message}” |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
