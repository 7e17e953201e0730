"""ViT image classification demo: `run.py` is the page (entry point `txgallery_demos.vit.run:demo`), `service.py` its
model (the classifier interface itself is `txgallery.lib.vit`)."""
