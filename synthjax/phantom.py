"""A built-in brain-like label map, so that everything runs with no data."""

from synthjax._src.phantom import PHANTOM_LABELS, PHANTOM_NAMES, brain_phantom

__all__ = ["brain_phantom", "PHANTOM_LABELS", "PHANTOM_NAMES"]
