"""Every page's main action as a program calls it (gradio_client), with a check that the answer is a real result.

Shared by the user-path suites that drive a running gallery through its API (the built Space, the cluster deployed
with `serve deploy`). Each call has `CALL_TIMEOUT` seconds to answer; one that does not fails with the server's stacks
(the suite passes a function that collects them), so a hung request fails instead of hanging the suite.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gradio_client import Client, handle_file

CALL_TIMEOUT = 120  # seconds one main action may take before the suite calls it hung
OUTSIDE_TEMP = Path("/var/tmp")  # where the suites put HOME and working directories: not the temp dir, not the repo
DEMOS = {"sentiment", "attention", "generation", "seq2seq", "vit", "clip", "finetune", "efficiency"}


def _fashion(name: str) -> str:
    from txgallery.lib.images import fashion_mnist_examples

    return str(fashion_mnist_examples()[name])


def _photo(name: str) -> str:
    from txgallery.lib.images import sample_photos

    return str(sample_photos()[name])


def _zips(files: Any) -> list[Path]:
    paths = [Path(f["path"] if isinstance(f, dict) else f) for f in (files if isinstance(files, list) else [files])]
    for path in paths:
        assert path.is_file() and zipfile.is_zipfile(path), f"{path} is not a downloaded zip"
    return paths


def _check_sentiment(result: tuple) -> None:
    # (notice, one badge per configured model, one label per model): every model that could load says "positive";
    # one that could not (a hub model offline, as on the Space) has no label and a badge that says why
    models = (len(result) - 1) // 2
    badges, labels = result[1:1 + models], result[1 + models:]
    assert any(label and label.get("label") == "positive" for label in labels), result
    for badge, label in zip(badges, labels):
        assert (label and label.get("label") == "positive") or (not label and "⚠️" in str(badge)), (badge, label)


def _check_sentiment_batch(result: tuple) -> None:
    table, csv_file, _ = result
    text = Path(csv_file).read_text()
    assert "positive" in text and "negative" in text, text


def _check_attention(result: tuple) -> None:
    assert "⚠️" not in str(result[0]), result[0]
    assert result[-1]["data"], "no per-head statistics"


def _check_generation(result: tuple) -> None:
    tokens = result[-1]
    assert tokens and len(tokens) >= 2, f"no generated tokens: {result}"


def _check_seq2seq(result: tuple) -> None:
    assert result[2] in {"positive", "negative"}, result[:3]


def _check_vit(expected: str) -> Callable[[tuple], None]:
    def check(result: tuple) -> None:
        assert expected in str(result[0]), f"expected {expected}: {result[0]}"
    return check


def _check_clip(result: tuple) -> None:
    assert result[0]["label"] == "cat", result[0]


def _check_efficiency(result: tuple) -> None:
    table, _, downloads = result
    # the variants' names as the table shows them: "fp32 (baseline)", "int8 dynamic (PyTorch)"
    assert {"fp32", "int8"} <= {str(row[0]).split()[0] for row in table["data"]}, table
    assert len(_zips(downloads)) == 2


def _check_finetune(result: str) -> None:
    assert isinstance(result, str) and "Queued" in result, result  # the progress line (the session state is private)


@dataclass(frozen=True)
class MainAction:
    """One page's main action: the endpoint, its arguments (files through `handle_file`) and the check."""

    page: str
    api_name: str
    args: Callable[[], tuple]
    check: Callable[[Any], None]

    def run(self, client: Client, on_timeout: Callable[[], str] = lambda: "") -> Any:
        """Call the endpoint through `client`, wait at most CALL_TIMEOUT s, check the result and return it."""
        from concurrent.futures import TimeoutError as FutureTimeout

        job = client.submit(*self.args(), api_name=f"/{self.api_name}")
        try:
            result = job.result(timeout=CALL_TIMEOUT)
        except FutureTimeout:
            raise AssertionError(f"/{self.api_name} did not answer in {CALL_TIMEOUT} s; the server's stacks:\n"
                                 f"{on_timeout()}") from None
        self.check(result)
        return result


MAIN_ACTIONS = [
    MainAction("sentiment", "sentiment_predict", lambda: ("A gripping, beautifully acted film.",), _check_sentiment),
    MainAction("sentiment", "sentiment_batch", lambda: ("Loved every minute of it.\nA dull, lifeless mess.", None),
               _check_sentiment_batch),
    MainAction("attention", "attention_analyse",
               lambda: ("minilm-l6", "The animal didn't cross the street because it was too tired.", "", 0, 0, []),
               _check_attention),
    MainAction("attention", "attention_analyse",
               lambda: ("smollm2-135m", "The cat sat on the mat.", "", 0, 0, []), _check_attention),
    MainAction("generation", "generation_generate",
               lambda: ("gpt2-shakespeare", "ROMEO:\nBut soft", False, 8, 0, "greedy", 0.8, 50, 0.95, 1.0, 4),
               _check_generation),
    MainAction("generation", "generation_generate",
               lambda: ("smollm2-135m", "Once upon a time", False, 8, 0, "greedy", 0.8, 50, 0.95, 1.0, 4),
               _check_generation),
    MainAction("seq2seq", "seq2seq_generate",
               lambda: ("A gripping, beautifully acted film.", "sentiment (sst2 sentence:)", "t5-rt-text2text",
                        "greedy", 4, 8), _check_seq2seq),
    MainAction("vit", "vit_classify", lambda: (handle_file(_fashion("Trouser")), "mean", 0.0), _check_vit("Trouser")),
    MainAction("clip", "clip_classify",
               lambda: (handle_file(_photo("chelsea")), "cat, car, rocket", "a photo of a {}"), _check_clip),
    MainAction("efficiency", "efficiency_measure", lambda: (["int8"], 0.5, False), _check_efficiency),
    MainAction("finetune", "finetune_start",
               lambda: ("Rotten Tomatoes sentiment", None, "frozen", 20, 0.01, 8, 8, 16, 0.1, [], 4, 16),
               _check_finetune),
]
