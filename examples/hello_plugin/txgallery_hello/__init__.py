"""A complete third-party txgallery demo: count the tokens of a text with the embedded encoder's tokenizer."""

import gradio as gr

from txgallery import Demo, ModelSlot
from txgallery.models.store import get_store, resolve


def count_tokens(text: str) -> dict:
    """Tokens of `text` as the embedded MiniLM tokenizer splits it."""
    tokenizer = get_store().load(resolve("embedded", "feature-extraction")).tokenizer
    tokens = tokenizer.tokenize(text or "")
    return {"tokens": tokens, "count": len(tokens)}


def build() -> gr.Blocks:
    with gr.Blocks() as page:
        text = gr.Textbox(label="Text")
        result = gr.JSON(label="Tokens")
        text.submit(count_tokens, text, result, api_name="hello_tokens")
    return page


demo = Demo(slug="hello", title="Hello tokens", description="How a BERT tokenizer splits your text.",
            build=build, tags=("tokenizer",), topic="Tokenization",
            lesson="Words become sub-word tokens; rare words split into several `##` pieces.",
            models=(ModelSlot(task="feature-extraction"),))
