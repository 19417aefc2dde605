"""Runnable examples; `examples.segmentation` is the training recipe."""
