"""The embedded models: real pretrained weights that ship in pip packages, and what txgallery trains from them.

One module per shipped model: its factory (registered with `txgallery.models.registry.register_embedded`), its
recipe and `txgallery train` command, and its README text. Importing this package registers them all.
"""

from txgallery.embedded import (  # noqa: F401
    conse,
    efficientnet,
    minilm,
    sentiment,
    shakespeare,
    smollm2,
    t5,
    vit,
)
