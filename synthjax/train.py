"""The segmentation recipe: a U-Net trained on synthetic images rendered in its train step,
and the drivers of `synthjax train` and `synthjax segment`.

Needs the `train` extra (`pip install 'synthjax[train]'`: Flax NNX, Optax, Orbax, SciPy,
Matplotlib). Real scans on the training grid are `synthjax.scans`.
"""

from synthjax._src.train.checkpoints import Checkpoints
from synthjax._src.train.cli import UserError
from synthjax._src.train.losses import dice_ce_loss
from synthjax._src.train.metrics import (
  dice_per_label,
  hausdorff95,
  label_volumes,
  mean_over_scans,
  mean_score,
  score_scan,
)
from synthjax._src.train.model import UNet
from synthjax._src.train.model import build as build_model
from synthjax._src.train.plot import plot_curves, read_metrics
from synthjax._src.train.qc import qc_picture
from synthjax._src.train.segment import Segmenter
from synthjax._src.train.segment import build_parser as build_segment_parser
from synthjax._src.train.segment import main as segment_main
from synthjax._src.train.segment import run as run_segment
from synthjax._src.train.steps import (
  flip_permutation,
  make_optimizer,
  make_predictor,
  make_train_step,
  render,
  segment_array,
)
from synthjax._src.train.train import TrainResult, load_config, segment_scan
from synthjax._src.train.train import build_parser as build_train_parser
from synthjax._src.train.train import main as train_main
from synthjax._src.train.train import run as run_train

__all__ = [
  "build_model",
  "UNet",
  "dice_ce_loss",
  "make_optimizer",
  "make_train_step",
  "make_predictor",
  "render",
  "segment_array",
  "flip_permutation",
  "Checkpoints",
  "dice_per_label",
  "score_scan",
  "mean_over_scans",
  "mean_score",
  "hausdorff95",
  "read_metrics",
  "plot_curves",
  "build_train_parser",
  "run_train",
  "train_main",
  "TrainResult",
  "load_config",
  "build_segment_parser",
  "run_segment",
  "segment_main",
  "Segmenter",
  "segment_scan",
  "UserError",
  "label_volumes",
  "qc_picture",
]
