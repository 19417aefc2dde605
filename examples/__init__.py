"""Runnable examples.

`segmentation/` holds the scripts of `synthjax train` and `synthjax segment`.
"""
