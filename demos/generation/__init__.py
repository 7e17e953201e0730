"""Generation studio (decoder-only) demo: `run.py` is the page (entry point `txgallery_demos.generation.run:demo`),
`service.py` its model, `decoding.py` the sampling maths and the decoding loop."""
