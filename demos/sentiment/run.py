"""BERT sentiment: text in, label and probabilities out, and which words pushed the decision.

Reads top to bottom: the lesson, the model logic as plain functions and one service class (testable without
Gradio), then `build()` that wires the UI. Run alone: `txgallery serve --demo sentiment` or
`python -m txgallery_demos.sentiment`.
"""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd
import torch

from txgallery.lib.uploads import find_column, header_names, read_csv_rows
from txgallery.limits import (
    MAX_ATTRIBUTION_TOKENS,
    MAX_BATCH_TEXTS,
    MAX_TOKENS,
    MAX_UPLOAD_BYTES,
    InputError,
    truncate_text,
)
from txgallery.models import store
from txgallery.plugin import ApiCall, Demo, ModelSlot, PageContext
from txgallery.serving.seam import connect
from txgallery.ui import (
    deep_link,
    examples_that_run,
    model_badge,
    shown_value,
    user_errors,
)

SLUG = "sentiment"
TASK = "text-classification"

LESSON = f"""
**Encoder-only transformers (BERT) for classification.** The whole sentence is read at once, in both directions;
a small head on the `[CLS]` position turns the encoder's summary into one score per label, and a softmax turns the
scores into probabilities.

The embedded model is **MiniLM-L6** (a 6-layer BERT) whose attention matrices were fine-tuned with **LoRA** on
Rotten Tomatoes review snippets by `txgallery train sentiment` — only ~0.3% of its weights were trained.

**Word attributions** use *integrated gradients*: the prediction is traced back along a straight path from an
empty input to your text, and each word gets its share of the change: red words pushed towards the predicted label,
purple words against it, and the deeper the colour, the harder the push (the key under the words names the labels).

**Try:** a negation ("not bad at all"), sarcasm, a mixed review ("great cast, awful script"), a very long review
(only the first {MAX_TOKENS} tokens are read), and the *Batch* tab with a CSV that has a `text` column.
"""

EXAMPLES = [
    "A gripping, beautifully acted film that stays with you long after the credits.",
    "The plot is a mess and the jokes fall flat; I checked my watch twice.",
    "Not bad at all: the second half more than makes up for a slow start.",
    "Great cast, awful script.",
]

TEXT_COLUMNS = ("text", "sentence", "review", "content")

# Gradio's HighlightedText paints a score s >= 0 as rgba(239, 68, 60, s) and s < 0 as rgba(128, 90, 213, -s)
# (its frontend's score colouring); the attribution key draws these two colours, so it must follow them.
TOWARDS_RGB = (239, 68, 60)  # red: the word pushed towards the predicted label
AGAINST_RGB = (128, 90, 213)  # purple: the word pushed against it


# --- input handling (pure functions) -----------------------------------------------------------------------------


def clean_text(text: str | None) -> tuple[str, str | None]:
    """Validate one input text; returns it (truncated if huge) and a notice, or raises `InputError`."""
    if text is None or (isinstance(text, str) and not text.strip()):
        raise InputError("Please enter some text: the input is empty.")
    if not isinstance(text, str):  # an API call that is not the page's textbox
        raise InputError(f"The text must be a string, not {type(text).__name__}.")
    text, notice = truncate_text(text)
    return text.strip(), notice


def parse_lines(text: str | None) -> list[str]:
    """One text per non-empty line, within the batch cap."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        raise InputError("Paste one text per line, or upload a CSV file with a `text` column.")
    return _within_batch_cap(lines)


def _within_batch_cap(texts: list[str]) -> list[str]:
    if len(texts) > MAX_BATCH_TEXTS:
        raise InputError(f"The batch has {len(texts):,} texts; the limit is {MAX_BATCH_TEXTS} per request.")
    return texts


def read_csv_texts(path: str | Path) -> list[str]:
    """Texts from an uploaded CSV's text column, with clear messages for every way the file can be wrong."""
    rows = read_csv_rows(path)
    column = find_column(rows, TEXT_COLUMNS)
    if column is None:
        found = ", ".join(header_names(rows).values()) or "none"
        raise InputError(f"The CSV needs a column named one of {', '.join(TEXT_COLUMNS)}; found: {found}.")
    texts = [(row.get(column) or "").strip() for row in rows]
    texts = [t for t in texts if t]
    if not texts:
        raise InputError(f"The column {column!r} has no text in it.")
    return _within_batch_cap(texts)


# --- the model service ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentimentResult:
    """One prediction: the winning label, every label's probability, and whether the input was cut."""

    label: str
    probabilities: dict[str, float]
    truncated: bool


def merge_word_pieces(tokens: list[str], scores: list[float]) -> list[tuple[str, float]]:
    """Join sub-word pieces back into words, summing their scores.

    WordPiece (BERT) marks continuations with `##`; BPE and SentencePiece (RoBERTa, T5) mark word starts with
    `Ġ` or `▁`, so there an unmarked piece continues the word before it.
    """
    marks_starts = any(t.startswith(("Ġ", "▁")) for t in tokens)
    words: list[list] = []
    for token, score in zip(tokens, scores):
        continues = token.startswith("##") or (marks_starts and not token.startswith(("Ġ", "▁")))
        if continues and words:
            words[-1][0] += token.removeprefix("##")
            words[-1][1] += score
        else:
            words.append([token.lstrip("Ġ▁"), score])
    return [(word, score) for word, score in words]


class SentimentClassifier:
    """A sequence classifier from the model store, with batched prediction and integrated-gradients attribution."""

    batched_methods = ("predict",)  # on Ray Serve, concurrent calls share one forward pass

    def __init__(self, source: store.ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source)
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def describe(self) -> str:
        """The model badge for the UI."""
        return model_badge(self.source, self.loaded)

    def _encode(self, texts: list[str], max_tokens: int):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=max_tokens,
                              return_tensors="pt").to(self.loaded.device)

    @torch.inference_mode()
    def predict(self, texts: list[str]) -> list[SentimentResult]:
        """Label every text (one forward pass for the batch)."""
        batch = self._encode(texts, MAX_TOKENS)
        probabilities = self.model(**batch).logits.float().softmax(-1).cpu()
        full_lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        return [
            SentimentResult(label=self.labels[int(p.argmax())],
                            probabilities={label: float(v) for label, v in zip(self.labels, p)},
                            truncated=n > MAX_TOKENS)
            for p, n in zip(probabilities, full_lengths)
        ]

    def attribute(self, text: str, steps: int = 24) -> list[tuple[str, float]]:
        """Integrated gradients (captum) of the predicted label w.r.t. the input embeddings, summed per word.

        Token scores are scaled so that the strongest token is ±1; the baseline keeps special tokens, pads the rest.
        """
        from captum.attr import LayerIntegratedGradients

        if getattr(self.model, "txgallery_inference_only", False):
            raise InputError("Word attributions need gradients, which this optimised model (ONNX or int8) has not.")
        batch = self._encode([text], MAX_ATTRIBUTION_TOKENS)
        input_ids = batch["input_ids"]
        special = torch.tensor(self.tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True),
                               dtype=torch.bool, device=input_ids.device)
        baseline = torch.where(special, input_ids, torch.full_like(input_ids, self.tokenizer.pad_token_id or 0))
        extra = {k: v for k, v in batch.items() if k != "input_ids"}

        def forward(ids):  # captum calls this with the interpolation steps stacked as a batch
            return self.model(input_ids=ids, **{k: v.expand(ids.shape[0], -1) for k, v in extra.items()}
                              ).logits.softmax(-1)

        with torch.no_grad():
            target = int(forward(input_ids).argmax(-1))
        ig = LayerIntegratedGradients(forward, self.model.get_input_embeddings())
        attributions = ig.attribute(input_ids, baselines=baseline, target=target, n_steps=steps,
                                    internal_batch_size=steps)
        scores = attributions.sum(-1)[0].detach().float().cpu()
        scores = scores / scores.abs().max().clamp_min(1e-9)
        tokens = self.tokenizer.convert_ids_to_tokens(input_ids[0].tolist())
        keep = [i for i, s in enumerate(special.tolist()) if not s]
        return merge_word_pieces([tokens[i] for i in keep], [float(scores[i]) for i in keep])


def attribution_key(probabilities: dict[str, float] | None) -> str:
    """The key under the word attributions (HTML): which colour pushed towards which label, and that depth is strength.

    The attributions are of the predicted label (the most probable one), scaled so the strongest word is ±1.
    """
    if not probabilities:
        return ""
    predicted = max(probabilities, key=probabilities.get)
    others = [label for label in probabilities if label != predicted]
    against = html.escape(others[0]) if len(others) == 1 else "the other labels"
    towards, away = f"rgb{TOWARDS_RGB}", f"rgb{AGAINST_RGB}"
    clear = lambda rgb: f"rgba{(*rgb, 0)}"  # noqa: E731
    swatch = ('<span class="tx-key-swatch" style="display:inline-block;width:14px;height:14px;border-radius:3px;'
              'vertical-align:-2px;margin-right:6px;background:{}"></span>')
    # the bar fades to nothing at 0 as the words do: Gradio sets the colour's alpha to |score|
    return (f'<div class="tx-attribution-key" data-predicted="{html.escape(predicted)}" style="font-size:15px;'
            f'line-height:1.5;margin-top:4px">'
            f'<div class="tx-key-bar" style="height:16px;border:1px solid #999;border-radius:3px;background:'
            f'linear-gradient(to right, {away} 0%, {clear(AGAINST_RGB)} 50%, {clear(TOWARDS_RGB)} 50%, '
            f'{towards} 100%)">'
            f'</div><div style="display:flex;justify-content:space-between"><span>−1</span><span>0</span>'
            f'<span>+1</span></div>'
            f'<div data-score="+1">{swatch.format(towards)}pushed towards <b>{html.escape(predicted)}</b> '
            f'(the prediction)</div>'
            f'<div data-score="-1">{swatch.format(away)}pushed towards <b>{against}</b> (against the prediction)</div>'
            f'<div>The deeper the colour, the harder the word pushed (the strongest word has the full colour); pale '
            f'words changed little.</div></div>')


def classify_batch(classifiers: dict[str, "SentimentClassifier"], texts: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Label many texts with every model that loads; one row per text, a label and a confidence column per model.

    Returns the table and one message per model that could not run (raises when none could).
    """
    frame, failures = pd.DataFrame({"text": texts}), []
    for name, classifier in classifiers.items():
        try:
            results = classifier.predict(texts)
        except store.ModelLoadError as exc:
            failures.append(str(exc))
            continue
        frame[f"label ({name})"] = [r.label for r in results]
        frame[f"confidence ({name})"] = [round(max(r.probabilities.values()), 4) for r in results]
    if len(frame.columns) == 1:
        raise store.ModelLoadError("No model could classify the batch: " + " ".join(failures))
    return frame, failures


# --- the UI ---------------------------------------------------------------------------------------------------------


def _classifiers(ctx: PageContext) -> list[tuple[str, store.ModelSource | store.ModelLoadError, object]]:
    """(name, source or error, service or None) for every configured model, in order."""
    named = []
    for source in ctx.models["model"]:
        if isinstance(source, store.ModelLoadError):
            named.append((source.ref, source, None))
        else:
            named.append((source.ref, source, connect(SentimentClassifier, source)))
    return named


def build(ctx: PageContext) -> gr.Blocks:
    """The sentiment page: single text with attributions, batch mode, models side by side."""
    classifiers = _classifiers(ctx)
    with gr.Blocks(title="Sentiment") as page:
        with gr.Tab("Single text"):
            text = gr.Textbox(label="Text", lines=4, placeholder="Type or paste a review…", max_length=None)
            run = gr.Button("Classify", variant="primary", elem_id="sentiment-run")
            examples_that_run(EXAMPLES, text, run)
            notice = gr.Markdown(label="Notice", elem_id="sentiment-notice")
            badges, labels, highlights, keys = [], [], [], []
            with gr.Row():
                for i, (name, source, _) in enumerate(classifiers):
                    with gr.Column():
                        badges.append(gr.Markdown(model_badge(source), label=f"Model — {name}"))
                        labels.append(gr.Label(label=f"Prediction — {name}", num_top_classes=5,
                                               elem_id=f"sentiment-label-{i}"))
                        highlights.append(gr.HighlightedText(label=f"Word attributions — {name}",
                                                             combine_adjacent=False, show_legend=False,
                                                             elem_id=f"sentiment-attributions-{i}"))
                        keys.append(gr.HTML(elem_id=f"sentiment-attribution-key-{i}"))
        with gr.Tab("Batch"):
            gr.Markdown(f"One text per line, or a UTF-8 CSV with a `text` column; at most {MAX_BATCH_TEXTS} texts and "
                        f"{MAX_UPLOAD_BYTES // 2**20} MB.")
            lines = gr.Textbox(label="Texts, one per line", lines=6)
            upload = gr.File(label="…or a CSV file", file_types=[".csv", ".txt"])
            run_batch = gr.Button("Classify all", variant="primary")
            batch_notice = gr.Markdown(label="Notice")
            table = gr.Dataframe(label="Predictions", wrap=True)
            download = gr.File(label="Download predictions (CSV)")

        answer = [notice, *badges, *labels]

        @user_errors
        def classify(text: str):
            cleaned, message = clean_text(text)
            outputs_badges, outputs_labels, truncated = [], [], False
            for _, source, classifier in classifiers:
                if classifier is None:
                    outputs_badges.append(model_badge(source))
                    outputs_labels.append(None)
                    continue
                try:
                    result = classifier.predict([cleaned])[0]
                    outputs_badges.append(classifier.describe())
                    outputs_labels.append(result.probabilities)
                    truncated = truncated or result.truncated
                except store.ModelLoadError as exc:
                    outputs_badges.append(model_badge(exc))
                    outputs_labels.append(None)
            if truncated:
                message = f"{message or ''} Only the first {MAX_TOKENS} tokens were classified.".strip()
            values = [f"ℹ️ {message}" if message else "", *outputs_badges, *outputs_labels]
            return [shown_value(component, value) for component, value in zip(answer, values)]

        @user_errors
        def explain(text: str):
            cleaned, _ = clean_text(text)
            outputs = []
            for _, _, classifier in classifiers:
                try:
                    outputs.append(None if classifier is None else classifier.attribute(cleaned))
                except (store.ModelLoadError, InputError):  # the badge above already says why
                    outputs.append(None)
            return outputs[0] if len(outputs) == 1 else outputs  # Gradio takes one output's value unwrapped

        def show_keys(*values):
            # one key per model that returned attributions, for the label it predicted
            probabilities, attributions = values[:len(classifiers)], values[len(classifiers):]
            shown = [attribution_key(p) if words else "" for p, words in zip(probabilities, attributions)]
            return shown[0] if len(shown) == 1 else shown

        @user_errors
        def classify_many(texts: str, csv_file):
            batch = read_csv_texts(csv_file) if csv_file else parse_lines(texts)
            batch = [clean_text(t)[0] for t in batch]
            frame, failures = classify_batch({name: c for name, _, c in classifiers if c is not None}, batch)
            failures += [str(source) for _, source, c in classifiers if c is None]
            out = Path(tempfile.mkdtemp(prefix="txgallery-")) / "sentiment_predictions.csv"
            frame.to_csv(out, index=False)
            return frame, str(out), "\n".join(f"⚠️ {failure}" for failure in failures)

        # The answer skips Gradio's per-component hops (one worker-thread hop per input and output, a few ms together):
        # `classify` makes each output's value with the component's own postprocess (`shown_value`).
        gr.on([run.click, text.submit], classify, inputs=text, outputs=answer,
              api_name="sentiment_predict", concurrency_id="sentiment", preprocess=False, postprocess=False
              ).then(explain, inputs=text, outputs=highlights, api_name="sentiment_explain", concurrency_id="sentiment"
                     ).then(show_keys, inputs=[*labels, *highlights], outputs=keys, api_name=False,
                            concurrency_limit=None, show_progress="hidden")
        run_batch.click(classify_many, inputs=[lines, upload], outputs=[table, download, batch_notice],
                        api_name="sentiment_batch", concurrency_id="sentiment")
        deep_link(page, {"text": text}, run=run)
    return page


demo = Demo(
    slug=SLUG,
    order=20,
    title="BERT sentiment",
    description="Classify movie reviews with a LoRA-tuned BERT encoder and see which words decided it.",
    build=build,
    tags=("encoder", "classification", "BERT", "LoRA", "attribution"),
    topic="Encoder-only transformers: BERT for classification",
    lesson=LESSON,
    models=(ModelSlot(task=TASK, default="embedded", hub_example="distilbert-base-uncased-finetuned-sst-2-english"),),
    traffic=(ApiCall("sentiment_predict", (EXAMPLES[0],)), ApiCall("sentiment_predict", (EXAMPLES[1],)),
             ApiCall("sentiment_explain", (EXAMPLES[3],)), ApiCall("sentiment_batch", ("\n".join(EXAMPLES), None))),
)


if __name__ == "__main__":  # `python demos/sentiment/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
