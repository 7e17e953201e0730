"""The Ray Serve application's former import path, kept for configs that still name `txgallery.ray_serve:build_app`
or `txgallery.ray_serve:app`. The application lives in `txgallery.serving.ray_serve`."""

from txgallery.serving import ray_serve


def __getattr__(name: str):
    # `app` is built on first access there too, so importing this module stays cheap
    return getattr(ray_serve, name)
