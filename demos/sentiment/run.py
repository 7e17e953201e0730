"""BERT sentiment: text in, label and probabilities out, and which words pushed the decision.

The layout every demo follows (and a plugin can copy): `service.py` holds the model service, plain Python that loads
its model through the model store; this file holds the lesson, the small pure functions the page uses, the panels,
and `build(ctx)`, which wires them. Run alone: `python demos/sentiment/run.py` or `txgallery serve --demo sentiment`.
"""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from txgallery_demos.sentiment.service import SentimentClassifier

from txgallery.lib.text import clean_text
from txgallery.lib.uploads import find_column, header_names, read_csv_rows
from txgallery.limits import MAX_BATCH_TEXTS, MAX_TOKENS, MAX_UPLOAD_BYTES, InputError
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.plugin import ApiCall, Demo, ModelSlot, PageContext
from txgallery.ui import (
    deep_link,
    examples_that_run,
    loaded_badge,
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

# (name, source or why it cannot run, service or None) per configured model: what `ctx.services` gives
Classifiers = list[tuple[str, ModelSource | ModelLoadError, Any]]


# --- input handling (pure functions) -----------------------------------------------------------------------------


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


# --- what the page answers (pure functions of the services) --------------------------------------------------------


def classify_text(classifiers: Classifiers, text: str) -> tuple[str, list[str], list[dict[str, float] | None]]:
    """The notice, then each model's badge and probabilities for one text (None where a model cannot run)."""
    cleaned, notice = clean_text(text)
    badges, probabilities, truncated = [], [], False
    for _, source, classifier in classifiers:
        result = None
        if classifier is not None:
            try:
                result = classifier.predict([cleaned])[0]
            except ModelLoadError as exc:
                source = exc  # the badge says why this model cannot run
        badges.append(loaded_badge(classifier if result else None, source))
        probabilities.append(result.probabilities if result else None)
        truncated = truncated or bool(result and result.truncated)
    if truncated:
        notice = f"{notice or ''} Only the first {MAX_TOKENS} tokens were classified.".strip()
    return (f"ℹ️ {notice}" if notice else ""), badges, probabilities


def explain_text(classifiers: Classifiers, text: str) -> list[list[tuple[str, float]] | None]:
    """Each model's word attributions for one text (None where a model cannot explain: its badge says why)."""
    cleaned, _ = clean_text(text)
    explained = []
    for _, _, classifier in classifiers:
        try:
            explained.append(None if classifier is None else classifier.attribute(cleaned))
        except (ModelLoadError, InputError):
            explained.append(None)
    return explained


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


def classify_batch(classifiers: dict[str, SentimentClassifier], texts: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Label many texts with every model that loads; one row per text, a label and a confidence column per model.

    Returns the table and one message per model that could not run (raises when none could).
    """
    frame, failures = pd.DataFrame({"text": texts}), []
    for name, classifier in classifiers.items():
        try:
            results = classifier.predict(texts)
        except ModelLoadError as exc:
            failures.append(str(exc))
            continue
        frame[f"label ({name})"] = [r.label for r in results]
        frame[f"confidence ({name})"] = [round(max(r.probabilities.values()), 4) for r in results]
    if len(frame.columns) == 1:
        raise ModelLoadError("No model could classify the batch: " + " ".join(failures))
    return frame, failures


def batch_predictions(classifiers: Classifiers, texts: str, csv_file: str | None) -> tuple[pd.DataFrame, str, str]:
    """The batch tab's answer: the table, the same table as a CSV file to download, and why any model is missing."""
    batch = [clean_text(t)[0] for t in (read_csv_texts(csv_file) if csv_file else parse_lines(texts))]
    frame, failures = classify_batch({name: c for name, _, c in classifiers if c is not None}, batch)
    failures += [str(source) for _, source, c in classifiers if c is None]
    out = Path(tempfile.mkdtemp(prefix="txgallery-")) / "sentiment_predictions.csv"
    frame.to_csv(out, index=False)
    return frame, str(out), "\n".join(f"⚠️ {failure}" for failure in failures)


def _one_or_many(values: list) -> Any:
    return values[0] if len(values) == 1 else values  # Gradio takes a single output's value unwrapped


# --- the panels (each returns the components it makes) ---------------------------------------------------------------


@dataclass
class SingleTextPanel:
    """The Single text tab: the input, then per model a badge, a prediction, word attributions and their key."""

    text: gr.Textbox
    run: gr.Button
    notice: gr.Markdown
    badges: list[gr.Markdown]
    labels: list[gr.Label]
    highlights: list[gr.HighlightedText]
    keys: list[gr.HTML]


def single_text_panel(classifiers: Classifiers) -> SingleTextPanel:
    """The input and examples, then one column per model, side by side."""
    text = gr.Textbox(label="Text", lines=4, placeholder="Type or paste a review…", max_length=None)
    run = gr.Button("Classify", variant="primary", elem_id="sentiment-run")
    examples_that_run(EXAMPLES, text, run)
    panel = SingleTextPanel(text, run, gr.Markdown(label="Notice", elem_id="sentiment-notice"), [], [], [], [])
    with gr.Row():
        for i, (name, source, _) in enumerate(classifiers):
            with gr.Column():
                panel.badges.append(gr.Markdown(model_badge(source), label=f"Model — {name}"))
                panel.labels.append(gr.Label(label=f"Prediction — {name}", num_top_classes=5,
                                             elem_id=f"sentiment-label-{i}"))
                panel.highlights.append(gr.HighlightedText(label=f"Word attributions — {name}",
                                                           combine_adjacent=False, show_legend=False,
                                                           elem_id=f"sentiment-attributions-{i}"))
                panel.keys.append(gr.HTML(elem_id=f"sentiment-attribution-key-{i}"))
    return panel


@dataclass
class BatchPanel:
    """The Batch tab: texts typed or uploaded, the table of predictions and its CSV."""

    lines: gr.Textbox
    upload: gr.File
    run: gr.Button
    notice: gr.Markdown
    table: gr.Dataframe
    download: gr.File


def batch_panel() -> BatchPanel:
    """One text per line or a CSV in, a table and its download out."""
    gr.Markdown(f"One text per line, or a UTF-8 CSV with a `text` column; at most {MAX_BATCH_TEXTS} texts and "
                f"{MAX_UPLOAD_BYTES // 2**20} MB.")
    return BatchPanel(lines=gr.Textbox(label="Texts, one per line", lines=6),
                      upload=gr.File(label="…or a CSV file", file_types=[".csv", ".txt"]),
                      run=gr.Button("Classify all", variant="primary"),
                      notice=gr.Markdown(label="Notice"),
                      table=gr.Dataframe(label="Predictions", wrap=True),
                      download=gr.File(label="Download predictions (CSV)"))


# --- the events ---------------------------------------------------------------------------------------------------


def answer_single_text(panel: SingleTextPanel, classifiers: Classifiers) -> None:
    """Classify on click or Enter, then explain, then draw each explaining model's key."""
    answer = [panel.notice, *panel.badges, *panel.labels]

    @user_errors
    def classify(text: str):
        """The sentiment of a text with each configured model: a notice (what was cut or cleaned), each model's badge,
        and each model's label with its probabilities."""
        notice, badges, probabilities = classify_text(classifiers, text)
        return [shown_value(component, value) for component, value in zip(answer, [notice, *badges, *probabilities])]

    @user_errors
    def explain(text: str):
        """Each configured model's word attributions for a text (Integrated Gradients towards the predicted label): the
        words with a signed score each."""
        return _one_or_many(explain_text(classifiers, text))

    def show_keys(*values):
        # one key per model that returned attributions, for the label it predicted
        probabilities, attributions = values[:len(classifiers)], values[len(classifiers):]
        return _one_or_many([attribution_key(p) if words else "" for p, words in zip(probabilities, attributions)])

    # the answer skips Gradio's per-component hops: `classify` makes each output's value with the component's own
    # postprocess (`shown_value`); why, in BENCHMARKS.md, "Sentiment: gallery path vs raw transformers forward"
    gr.on([panel.run.click, panel.text.submit], classify, inputs=panel.text, outputs=answer,
          api_name="sentiment_predict", concurrency_id="sentiment", preprocess=False, postprocess=False
          ).then(explain, inputs=panel.text, outputs=panel.highlights, api_name="sentiment_explain",
                 concurrency_id="sentiment"
                 ).then(show_keys, inputs=[*panel.labels, *panel.highlights], outputs=panel.keys, api_name=False,
                        concurrency_limit=None, show_progress="hidden")


def answer_batch(panel: BatchPanel, classifiers: Classifiers) -> None:
    """Classify every text of the batch with every model."""

    @user_errors
    def classify_many(texts: str, csv_file):
        """The sentiment of many texts, one per line or from a CSV file with a text column, with every configured model:
        a table, the table as a CSV file, and a notice."""
        return batch_predictions(classifiers, texts, csv_file)

    panel.run.click(classify_many, inputs=[panel.lines, panel.upload],
                    outputs=[panel.table, panel.download, panel.notice],
                    api_name="sentiment_batch", concurrency_id="sentiment")


# --- the page -----------------------------------------------------------------------------------------------------


def build(ctx: PageContext) -> gr.Blocks:
    """The sentiment page: single text with attributions, batch mode, models side by side."""
    classifiers = ctx.services(SentimentClassifier)
    with gr.Blocks(title="Sentiment") as page:
        with gr.Tab("Single text"):
            single = single_text_panel(classifiers)
        with gr.Tab("Batch"):
            batch = batch_panel()
        answer_single_text(single, classifiers)
        answer_batch(batch, classifiers)
        deep_link(page, {"text": single.text}, run=single.run)
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
    models=(ModelSlot(task=TASK, default="embedded", hub_example="distilbert/distilbert-base-uncased-finetuned-sst-2-english"),),
    traffic=(ApiCall("sentiment_predict", (EXAMPLES[0],)), ApiCall("sentiment_predict", (EXAMPLES[1],)),
             ApiCall("sentiment_explain", (EXAMPLES[3],)), ApiCall("sentiment_batch", ("\n".join(EXAMPLES), None))),
)


if __name__ == "__main__":  # `python demos/sentiment/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
