"""ViT image classification demo; the demo itself is `run.py` (entry point `txgallery_demos.vit.run:demo`)."""
