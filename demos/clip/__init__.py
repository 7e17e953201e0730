"""CLIP zero-shot image-text matching demo; the demo itself is `run.py` (entry point `txgallery_demos.clip.run:demo`)."""
