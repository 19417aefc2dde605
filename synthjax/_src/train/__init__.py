"""The segmentation recipe: train a U-Net on synthjax images, segment real scans.

Modules: `model` (the 2-D / 3-D U-Net), `losses` (DiceCE), `steps` (the jitted train step
and predictor, sharding), `checkpoints` (Orbax), `metrics` (Dice, HD95, volumes), `plot`,
and the drivers of `synthjax train` (`train`) and `synthjax segment` (`segment`); real scans and
label maps on the training grid are `synthjax._src.scans`. Needs the `train` extra:
`pip install 'synthjax[train]'`. This package itself imports nothing, so that the
`synthjax` command can build its parsers without the extra.
"""
