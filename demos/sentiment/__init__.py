"""BERT sentiment demo (entry point `txgallery_demos.sentiment:demo`)."""

from txgallery_demos.sentiment.demo import demo

__all__ = ["demo"]
