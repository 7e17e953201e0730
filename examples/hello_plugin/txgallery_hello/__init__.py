"""A complete third-party txgallery demo: count the tokens of a text with the embedded encoder's tokenizer.

It is built the way every demo is: a plain service class that loads its model through the store, reached through
the serving seam (`connect`), so the same code runs in one process, on a Space or on Ray Serve.
"""

import gradio as gr

from txgallery import Demo, ModelSlot, PageContext, connect
from txgallery.models.store import ModelSource, get_store


class TokenCounter:
    """The model service: one tokenizer, loaded once wherever the service runs."""

    def __init__(self, source: ModelSource) -> None:
        self.tokenizer = get_store().load(source).tokenizer

    def count(self, text: str) -> dict:
        """Tokens of `text` as the tokenizer splits them."""
        tokens = self.tokenizer.tokenize(text or "")
        return {"tokens": tokens, "count": len(tokens)}


def build(ctx: PageContext) -> gr.Blocks:
    """The page: a text box and the tokens it splits into."""
    counter = connect(TokenCounter, ctx.model())
    with gr.Blocks() as page:
        text = gr.Textbox(label="Text")
        result = gr.JSON(label="Tokens")
        text.submit(counter.count, text, result, api_name="hello_tokens")
    return page


demo = Demo(slug="hello", title="Hello tokens", description="How a BERT tokenizer splits your text.",
            build=build, tags=("tokenizer",), topic="Tokenization",
            lesson="Words become sub-word tokens; rare words split into several `##` pieces.",
            models=(ModelSlot(task="feature-extraction"),))
