"""Generation studio (decoder-only) demo; the demo itself is `run.py` (entry point `txgallery_demos.generation.run:demo`)."""
