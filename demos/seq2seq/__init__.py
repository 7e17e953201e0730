"""Encoder-decoder text-to-text (T5/BART) demo; the demo itself is `run.py` (entry point `txgallery_demos.seq2seq.run:demo`)."""
