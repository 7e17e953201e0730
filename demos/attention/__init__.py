"""Attention explorer demo: `run.py` is the page (entry point `txgallery_demos.attention.run:demo`), `service.py` its
models (the text models' explorer and the ViT's)."""
