"""Demos shipped with txgallery, installed as `txgallery_demos`; each sub-package is one plugin."""
