"""Fine-tuning playground demo; the demo itself is `run.py` (entry point `txgallery_demos.finetune.run:demo`)."""
