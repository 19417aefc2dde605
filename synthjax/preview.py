"""Preview montages of the augmentation range (for notebooks and `synthjax preview`)."""

from synthjax._src.preview import label_colors, preview, save_png

__all__ = ["preview", "save_png", "label_colors"]
