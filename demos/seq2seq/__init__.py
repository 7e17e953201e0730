"""Encoder-decoder text-to-text (T5/BART) demo: `run.py` is the page (entry point `txgallery_demos.seq2seq.run:demo`),
`service.py` its model."""
