"""Attention explorer demo; the demo itself is `run.py` (entry point `txgallery_demos.attention.run:demo`)."""
