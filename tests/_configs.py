"""Config fragments that the test modules share."""

# `SynthConfig` overrides that switch off every stage a plain config enables besides the GMM:
# the labels come out as placed, each with one Gaussian.
ALL_OFF = dict(
  affine={"enabled": False},
  deformation={"enabled": False},
  flip={"enabled": False},
  bias={"enabled": False},
  gamma={"enabled": False},
  resolution={"enabled": False},
  noise={"enabled": False},
)
