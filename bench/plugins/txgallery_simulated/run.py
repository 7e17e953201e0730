"""Simulated GPU: one text in, the same text out after a batch's time on a simulated accelerator.

The page of the capacity bench (bench/bench_capacity.py): no model, no CPU work, only a device held for a fixed time
per batch (`device.SimulatedDevice`), so what the bench measures is the serving stack itself: the proxy, the UI
replica and the deployments' batching. Device times: `TXGALLERY_SIMULATED_DEVICE_MS=BASE,PER_ITEM` (default 20,1).
"""

from __future__ import annotations

import gradio as gr

from txgallery import ApiCall, Demo, connect
from txgallery.ui import user_errors
from txgallery_simulated.device import SimulatedDevice, device_ms_from_env

SLUG = "simulated"


def build() -> gr.Blocks:
    """The page: a text box, a button, the answer with the size of the batch it ran in."""
    device = connect(SimulatedDevice, *device_ms_from_env())

    @user_errors
    def predict(text: str) -> str:
        return device.predict([text])[0]

    base_ms, per_item_ms = device_ms_from_env()
    with gr.Blocks(title="Simulated GPU") as page:
        gr.Markdown(f"A device held for {base_ms:g} ms + {per_item_ms:g} ms per item of each batch.")
        text = gr.Textbox(label="Text", value="hello")
        run = gr.Button("Run")
        answer = gr.Textbox(label="Answer")
        run.click(predict, text, answer, api_name="simulated_predict", concurrency_id=SLUG)
    return page


demo = Demo(
    slug=SLUG,
    title="Simulated GPU",
    description="A stand-in model that holds a simulated accelerator for a fixed time per batch (capacity bench).",
    build=build,
    tags=("serving", "benchmark"),
    topic="Serving: batching and replicas",
    order=10_000,
    traffic=(ApiCall("simulated_predict", ("hello",)),),
)
