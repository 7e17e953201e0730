"""A simulated-GPU demo for the capacity bench and the serving tests (not installed: enable it with PYTHONPATH).

    PYTHONPATH=bench/plugins txgallery serve --demo simulated
    PYTHONPATH=bench/plugins .venv/bin/python bench/bench_capacity.py

`bench/plugins` holds this package and its `txgallery_simulated-0.1.0.dist-info`, whose entry point puts the demo
in the `txgallery.demos` group: on the path it is discovered like any third-party demo (plugin → service class →
`connect` → a Ray Serve deployment of its own); off the path the gallery never sees it.
"""
