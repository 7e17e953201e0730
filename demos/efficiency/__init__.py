"""Efficiency lab demo; the demo itself is `run.py` (entry point `txgallery_demos.efficiency.run:demo`)."""
