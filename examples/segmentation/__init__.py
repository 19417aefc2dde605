"""The segmentation recipe: train a U-Net on synthjax images, segment real scans.

Modules: `model` (the 2-D / 3-D U-Net), `losses` (DiceCE), `steps` (the jitted train step
and predictor, sharding), `scans` (real scans and label maps on the training grid),
`checkpoints` (Orbax), `metrics` (Dice, HD95), `plot`, and the scripts `train` and
`predict`. Needs the `train` extra: `pip install -e ".[train]"`.
"""
