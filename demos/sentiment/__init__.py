"""BERT sentiment demo; the demo itself is `run.py` (entry point `txgallery_demos.sentiment.run:demo`)."""
