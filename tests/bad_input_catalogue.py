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


def _png(directory: Path, name: str = "picture.png", truncate: int | None = None) -> Path:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="PNG")
    data = buffer.getvalue()
    path = directory / name
    path.write_bytes(data[:truncate] if truncate else data)
    return path


def _truncated_png(directory: Path) -> Path:
    return _png(directory, "cut.png", truncate=80)


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
    BadInput("efficiency", "distillation alpha 2 (a weight above 1)", "efficiency_distil", (2, 100, 2.0, 2.0),
             "greater than maximum value"),
    # --- attention ---
    BadInput("attention", "empty text", "attention_analyse", ("minilm-l6", "", "", 0, 0, []), "the input is empty"),
    BadInput("attention", "only emoji", "attention_analyse", ("minilm-l6", "🙂🙂🙂", "", 0, 0, []),
             "no letters or digits"),
    BadInput("attention", "a model that is not on offer", "attention_analyse", ("no-such-model", "Hello", "", 0, 0, []),
             "no-such-model"),
    BadInput("attention", "sentence pair given to the decoder", "attention_analyse",
             ("smollm2-135m", "Hello there.", "General Kenobi.", 0, 0, []), "pairs are for encoders"),
    BadInput("attention", "tensors asked for before any analysis", "attention_tensors", ("npz",),
             "Show attention"),
    BadInput("attention", "10,000 positions", "attention_positions", ("minilm-l6", 10_000),
             "greater than maximum value"),
    BadInput("attention", "ViT without an image", "attention_vit", (None, "mean", 0.0), "upload an image"),
    BadInput("attention", "ViT on a text file named .png", "attention_vit",
             _upload(_file("notes.png", b"just some text, not a picture"), "mean", 0.0), "not an image"),
    # --- vit ---
    BadInput("vit", "no image", "vit_classify", (None, "mean", 0.0), "upload an image"),
    BadInput("vit", "a text file named .jpg", "vit_classify", _upload(_file("photo.jpg", b"hello"), "mean", 0.0),
             "not an image"),
    BadInput("vit", "a truncated PNG", "vit_classify", _upload(_truncated_png, "mean", 0.0), "corrupt or truncated"),
    BadInput("vit", "an empty file", "vit_classify", _upload(_file("empty.png", b""), "mean", 0.0), "is empty"),
    BadInput("vit", "discard ratio 0.99", "vit_classify", _upload(_png, "mean", 0.99), "between 0 and 0.95"),
    BadInput("vit", "ViT vs CNN without a photo", "vit_compare", (None,), "upload an image"),
    # --- clip ---
    BadInput("clip", "no labels", "clip_classify", _upload(_png, "", "a photo of a {}"), "enter some labels"),
    BadInput("clip", "a single label", "clip_classify", _upload(_png, "cat", "a photo of a {}"), "at least 2 labels"),
    BadInput("clip", "the same label twice", "clip_classify", _upload(_png, "cat, Dog, dog", "a photo of a {}"),
             "appears twice"),
    BadInput("clip", "51 labels", "clip_classify",
             _upload(_png, ", ".join(f"label {i}" for i in range(51)), "a photo of a {}"), "per request"),
    BadInput("clip", "a template without {}", "clip_classify", _upload(_png, "cat, dog", "a photo"), '"{}"'),
    BadInput("clip", "empty search query", "clip_search", ("  ", None), "describe what to look for"),
    BadInput("clip", "image → text without a picture", "clip_describe", (None, "a cat\na dog"),
             "upload a picture"),
    # --- generation ---
    BadInput("generation", "empty prompt", "generation_generate",
             ("gpt2-shakespeare", "  ", False, 8, 0, "greedy", 0.8, 50, 0.95, 1.0, 4), "empty"),
    BadInput("generation", "only control characters", "generation_generate",
             ("gpt2-shakespeare", "\x00\x01\x02\x1b", False, 8, 0, "greedy", 0.8, 50, 0.95, 1.0, 4),
             "only control or invisible characters"),
    BadInput("generation", "sampling at a negative temperature", "generation_generate",
             ("gpt2-shakespeare", "ROMEO:", False, 8, 0, "sampling", -0.5, 50, 0.95, 1.0, 4), "less than minimum value"),
    BadInput("generation", "top-p 0", "generation_generate",
             ("gpt2-shakespeare", "ROMEO:", False, 8, 0, "sampling", 0.8, 50, 0.0, 1.0, 4), "less than minimum value"),
    BadInput("generation", "top-k -1", "generation_generate",
             ("gpt2-shakespeare", "ROMEO:", False, 8, 0, "sampling", 0.8, -1, 0.9, 1.0, 4), "less than minimum value"),
    BadInput("generation", "10,000 new tokens", "generation_generate",
             ("gpt2-shakespeare", "ROMEO:", False, 10_000, 0, "greedy", 0.8, 50, 0.95, 1.0, 4),
             "greater than maximum value"),
    BadInput("generation", "chat template on a model without one", "generation_generate",
             ("gpt2-shakespeare", "ROMEO:", True, 8, 0, "greedy", 0.8, 50, 0.95, 1.0, 4), "no chat template"),
    # --- seq2seq ---
    BadInput("seq2seq", "empty text", "seq2seq_generate",
             ("", "sentiment (sst2 sentence:)", "t5-rt-text2text", "greedy", 4, 8), "empty"),
    BadInput("seq2seq", "fill-in without a gap", "seq2seq_generate",
             ("no gap in this sentence", "fill in the blank (fill:)", "t5-rt-text2text", "greedy", 4, 8),
             "needs a gap"),
    BadInput("seq2seq", "1,000 new tokens", "seq2seq_generate",
             ("a fine film", "sentiment (sst2 sentence:)", "t5-rt-text2text", "greedy", 4, 1000),
             "greater than maximum value"),
    # --- finetune ---
    BadInput("finetune", "CSV task without a CSV", "finetune_start",
             ("Your CSV (text,label)", None, "lora", 5, 1e-3, 8, 8, 16, 0.1, [], 4, 16), "Upload a CSV file"),
    BadInput("finetune", "a learning rate of 1e9", "finetune_start",
             ("Rotten Tomatoes sentiment", None, "lora", 5, 1e9, 8, 8, 16, 0.1, [], 4, 16), "learning rate"),
    BadInput("finetune", "a binary file as the CSV", "finetune_start",
             _upload("Your CSV (text,label)", _file("data.csv", b"\x00\xff" * 200), "lora", 5, 1e-3, 8, 8, 16, 0.1,
                     [], 4, 16), "binary"),
    BadInput("finetune", "100,000 steps", "finetune_start",
             ("Rotten Tomatoes sentiment", None, "lora", 100_000, 1e-3, 8, 8, 16, 0.1, [], 4, 16),
             "greater than maximum value"),
    BadInput("finetune", "Cancel with nothing running", "finetune_cancel", (), "No training run is in progress"),
    BadInput("finetune", "compare before any run (no run to choose)", "finetune_compare", ("", "a fine film"),
             "not in the list of choices"),
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
