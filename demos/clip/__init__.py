"""CLIP zero-shot image-text matching demo: `run.py` is the page (entry point `txgallery_demos.clip.run:demo`),
`service.py` its model."""
