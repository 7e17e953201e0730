"""BERT sentiment demo: `run.py` is the page (entry point `txgallery_demos.sentiment.run:demo`), `service.py` its
model."""
