"""Hugging Face Space entry: the whole txgallery gallery, every model call wrapped in ZeroGPU's `@spaces.GPU`."""

import os

from txgallery.gallery import launch
from txgallery.serving.spaces import build_space_app

demo = build_space_app()  # models from ./txgallery.toml, preloaded (TXGALLERY_PRELOAD=0 to load on first use)

if __name__ == "__main__":
    # a Space reaches the app through its own proxy: bind where it says (GRADIO_SERVER_NAME), 127.0.0.1 elsewhere
    launch(demo, host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
           port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
