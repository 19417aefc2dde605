"""Configs with the defaults of the generators this library mirrors.

`synthseg` follows SynthSeg's `BrainGenerator` (Billot et al., MedIA 2023); `fetal` follows
FetalSynthGen's default generator config (Zalevskyi et al., 2024). Keyword overrides
replace `SynthConfig` fields; a dict for a stage updates that stage's fields only::

    synthseg(values, (160, 160, 160), bias={"prob": 0.5}, noise={"prob": 1.0, "std": (0, 0.05)})
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from synthjax._src import priors as priors_lib
from synthjax._src.config import (
  AffineConfig,
  BiasConfig,
  BlurCortexConfig,
  BoundaryConfig,
  DeformationConfig,
  FlipConfig,
  GammaConfig,
  GhostingConfig,
  GibbsConfig,
  GMMConfig,
  NoiseConfig,
  ResolutionConfig,
  RicianConfig,
  SliceStackConfig,
  SpikeConfig,
  StructNoiseConfig,
  SubclusterConfig,
  SynthConfig,
  TextureConfig,
)

# FreeSurfer's lateralised structures (FreeSurferColorLUT): left -> right.
_FS_LEFT_RIGHT = {
  2: 41,
  3: 42,
  4: 43,
  5: 44,
  7: 46,
  8: 47,
  10: 49,
  11: 50,
  12: 51,
  13: 52,
  17: 53,
  18: 54,
  26: 58,
  28: 60,
  30: 62,
  31: 63,
}
# Parcellation ranges whose right-hemisphere value is the left one plus an offset.
_FS_RANGES = ((1000, 1999, 1000), (3000, 3999, 1000), (11100, 11199, 1000))


# Labels each preset's source generator is built for (used by `synthjax info`).
FETA_LABELS = tuple(range(8))
# FeTA labels grouped into FetalSynthGen's brain meta-labels by tissue: CSF (external CSF,
# ventricles), grey matter (cortex, deep GM), white matter (WM, cerebellum, brainstem).
FETA_META_LABELS = ((1, 4), (2, 6), (3, 5, 7))
_ASEG = (
  0,
  2,
  3,
  4,
  5,
  7,
  8,
  10,
  11,
  12,
  13,
  14,
  15,
  16,
  17,
  18,
  24,
  26,
  28,
  30,
  31,
  41,
  42,
  43,
  44,
  46,
  47,
  49,
  50,
  51,
  52,
  53,
  54,
  58,
  60,
  62,
  63,
  72,
  77,
  80,
  85,
  251,
  252,
  253,
  254,
  255,
)
FREESURFER_LABELS = _ASEG + tuple(range(1000, 1036)) + tuple(range(2000, 2036))


def freesurfer_flip_pairs(label_values: Iterable[int]) -> tuple[tuple[int, int], ...]:
  """Left/right pairs among FreeSurfer label values (both sides must be present)."""
  present = set(int(v) for v in label_values)
  pairs = [(l, r) for l, r in _FS_LEFT_RIGHT.items() if l in present and r in present]
  for lo, hi, off in _FS_RANGES:
    pairs += [(v, v + off) for v in sorted(present) if lo <= v <= hi and v + off in present]
  return tuple(pairs)


def _artifacts_off() -> dict[str, Any]:
  """The MR artifact stages, off (neither generator has them; opt-in as in TorchIO).

  Their ranges are the TorchIO / MONAI defaults (Gibbs alpha capped at 0.8 and Rician std
  set for the [0, 1] image), so `spike={"prob": 0.5}` switches one on with sensible values.
  """
  return dict(
    spike=SpikeConfig(num_spikes=(1, 1), intensity=(1.0, 3.0), prob=0.0, enabled=False),
    ghosting=GhostingConfig(
      num_ghosts=(4, 10), axes=(0, 1, 2), intensity=(0.5, 1.0), restore=0.0, prob=0.0, enabled=False
    ),
    gibbs=GibbsConfig(alpha=(0.0, 0.8), prob=0.0, enabled=False),
    rician=RicianConfig(std=(0.0, 0.05), prob=0.0, enabled=False),
  )


def _build(
  base: SynthConfig, overrides: dict[str, Any], priors: priors_lib.IntensityPriors | None = None
) -> SynthConfig:
  cfg = base.replace(**overrides) if overrides else base
  return cfg if priors is None else priors_lib.apply(cfg, priors)


def synthseg(
  label_values: Sequence[int],
  shape: Sequence[int],
  spacing: Sequence[float] = (1.0, 1.0, 1.0),
  *,
  priors: priors_lib.IntensityPriors | None = None,
  **overrides: Any,
) -> SynthConfig:
  """SynthSeg `BrainGenerator` defaults.

  Means U[0, 250] and stds U[0, 30] per label, background zeroed in 5% of samples; scaling
  ±0.2 per axis (of the sampling grid: a factor `s` renders the anatomy at `1 / s` of its
  size, as SynthSeg's spatial transformer; TorchIO's `scales` is the inverse), rotation ±15°,
  shear ±0.012, no translation; velocity std up to 4 voxels on a
  grid of 0.04 × shape, integrated at half resolution in 7 squarings; bias std up to 0.7
  on a grid of 0.025 × shape with p 0.95; clip at 300 and gamma exp(N(0, 0.5));
  resolution up to 4 mm isotropic (p 0.1) or 8 mm along one axis, thickness up to the
  resolution, blur σ = 0.75·thickness/spacing; left/right flip p 0.5 with FreeSurfer's
  label pairs swapped. SynthSeg adds no voxel noise, so the noise stage is disabled;
  `noise={"prob": 1.0, "std": (0.0, 0.05)}` enables it. The MR artifact stages (spike,
  ghosting, gibbs, rician) are off; e.g. `ghosting={"prob": 0.3}` enables one.

  These defaults suit SynthSeg's task: label maps with head labels, scans of any resolution.
  For skull-stripped target scans, or label maps whose label 0 is everything outside the
  brain, `gmm={"prob_background_zero": 1.0}` renders that background at 0 as such scans
  show it (cornucopia's `sample_in_background=False`); for scans at the training grid's
  resolution, `resolution={"enabled": False}` (SynthSeg's `randomise_res=False`). On the
  MNI152 T1 at 2 mm both together raised a 2-D net's mean Dice at 1000 steps from 0.48 and
  0.58 to 0.64 and 0.66 (two seeds; `benchmarks/RESULTS.md`, section 8).

  Args:
    label_values: the generation label values.
    shape: output shape.
    spacing: voxel spacing in mm.
    priors: `synthjax.priors.estimate`'s ranges measured on real scans of the target
      contrast: the labels they name draw their Gaussians from them (SynthSeg's
      contrast-specific training); None keeps the wide ranges.
    **overrides: `SynthConfig` fields (e.g. `output_labels`, `flip_pairs`) or stage dicts.

  Examples:
    >>> cfg = synthseg((0, 2, 3, 41, 42), (64, 64, 64))
    >>> cfg.flip_pairs
    ((2, 41), (3, 42))
  """
  base = SynthConfig(
    shape=tuple(shape),
    label_values=tuple(label_values),
    spacing=tuple(spacing),
    flip_pairs=freesurfer_flip_pairs(label_values),
    background=0 if 0 in tuple(label_values) else tuple(label_values)[0],
    gmm=GMMConfig(mean=(0.0, 250.0), std=(0.0, 30.0), prob_background_zero=0.05),
    affine=AffineConfig(
      rotation=(-15.0, 15.0),
      scaling=(0.8, 1.2),
      shear=(-0.012, 0.012),
      translation=(0.0, 0.0),
      prob=1.0,
    ),
    deformation=DeformationConfig(std=(0.0, 4.0), grid_scale=(0.04, 0.04), steps=7, prob=1.0),
    flip=FlipConfig(axis=0, prob=0.5),
    bias=BiasConfig(std=(0.0, 0.7), grid_scale=(0.025, 0.025), prob=0.95),
    gamma=GammaConfig(std=0.5, clip=300.0, prob=1.0),
    resolution=ResolutionConfig(
      max_res_iso=4.0,
      max_res_aniso=8.0,
      min_res=None,
      prob_iso=0.1,
      random_thickness=True,
      blur_factor=0.75,
      blur_range=1.03,
      prob=0.95,
    ),
    noise=NoiseConfig(std=(0.0, 0.0), prob=0.0, enabled=False),
    **_artifacts_off(),
  )
  return _build(base, overrides, priors)


# The voxel size FetalSynthGen renders at, in mm: its ranges in voxels describe this grid.
FETALSYNTHGEN_SPACING = 0.5


def fetal(
  label_values: Sequence[int],
  shape: Sequence[int],
  spacing: Sequence[float] = (0.5, 0.5, 0.5),
  *,
  seeds: bool = False,
  priors: priors_lib.IntensityPriors | str | None = "fetal_t2w",
  **overrides: Any,
) -> SynthConfig:
  """FetalSynthGen default generator ranges, in millimetres.

  Rotations ±20°, shear ±0.02, scaling ±0.1 per axis (of the sampling grid: the anatomy
  appears at `1 / scaling`), and an isotropic object size of 0.5–1.1 times the map's
  (`AffineConfig.object_size`): fetal brains roughly double in linear size between 20 and
  38 weeks of gestation, and FetalSynthGen's ±10 % alone cannot render a 38-week map at
  20-week size; velocity
  std 0–4 voxels on a grid of
  0.03–0.06 × shape; bias std 0.01–0.3 on a grid of 0.004–0.02 × shape; gamma std 0.1;
  resolution 0.5–1.5 mm; noise std 5–15 on a 0–255 scale (5/255–15/255 here); every
  stage applied with probability 0.9; flip p 0.5 (FeTA labels are not lateralised, so no
  pairs by default). Intensities: fetal brain MRI is T2-weighted, and on FeTA labels each
  tissue's Gaussian (and its sub-label classes') is drawn from the ranges measured on real
  fetal T2w volumes (`synthjax.priors.FETAL_T2W`: bright CSF and ventricles, a dark
  cortex); other labels draw from FetalSynthGen's GMM ranges, means U[25, 225] and stds
  U[5, 25] (`priors=None`: every label does, as FetalSynthGen);
  the background's Gaussian is zero in half of the samples, as FetalSynthSeg trains
  ("set the background to zero every once in a while", p 0.5): skull-stripped fetal
  reconstructions show a zero background, others show maternal tissue.
  The MR artifact stages (spike, ghosting, gibbs, rician, motion) are off, as in
  FetalSynthGen's defaults; a positive `prob` enables one. Its super-resolution artifacts
  are on with its documented defaults: cortex blur and structural noise (p 0.4, FeTA
  labels only), skull-stripping boundaries, and the slice-stack acquisition (p 0.4).

  FetalSynthGen renders on a 0.5 mm grid, and the ranges above that count voxels describe
  that grid: the velocity std (4 voxels: 2 mm), the node spacings of the small grids of the
  velocity, the bias and the procedural subclusters (`grid_scale`: one node per
  `1 / grid_scale` voxels), the halo radius and fuzzy widths of the boundaries, and the blob
  and blur widths of the cortex blur and the structural noise. On another `spacing` the
  preset converts each to that grid, so the anatomy is deformed, the fields vary and the
  artifacts extend over the same millimetres (`_voxel_ratio`); the per-voxel stds (GMM,
  subclusters, noise) are given for 0.5 mm voxels (`noise_spacing`), so a 2 mm voxel has
  the spread of 64 averaged 0.5 mm voxels. At 0.5 mm the ranges are FetalSynthGen's own.

  Sub-label intensity classes, as in FetalSynthGen: 1..6 subclusters per meta-label (wider
  than FetalSynthGen's stored config, 1..3), with the subclusters of CSF, GM and WM drawn
  about a shared mean (its `generation_classes`, spread 25) and the non-brain ones
  independent. With `seeds=True` they come from its seed maps in every sample (pass
  `seeds=` to `synthesize`, 4 meta-labels); otherwise from the procedural split, with FeTA
  labels grouped as `FETA_META_LABELS` when the label values are FeTA's and every label on
  its own otherwise, in half of the samples (the others render each label's own Gaussian,
  as SynthSeg does): on real fetal T2w volumes that trained better nets than classes in
  every sample (`benchmarks/RESULTS.md`, section 11).

  Args:
    label_values: the generation label values (FeTA: 0..7).
    shape: output shape.
    spacing: voxel spacing in mm.
    seeds: use precomputed seed maps instead of the procedural split.
    priors: intensity ranges measured on real fetal scans (`synthjax.priors.estimate`):
      the labels they name draw their Gaussians from them (stds converted to the 0.5 mm
      noise voxel). `"fetal_t2w"` (the default) takes `synthjax.priors.FETAL_T2W` when the
      label values are FeTA's (and none otherwise); None keeps FetalSynthGen's ranges
      for every label.
    **overrides: `SynthConfig` fields or stage dicts.
  """
  p = 0.9
  r = _voxel_ratio(spacing)
  base = SynthConfig(
    shape=tuple(shape),
    label_values=tuple(label_values),
    spacing=tuple(spacing),
    noise_spacing=(FETALSYNTHGEN_SPACING,) * 3,
    background=0 if 0 in tuple(label_values) else tuple(label_values)[0],
    gmm=GMMConfig(mean=(25.0, 225.0), std=(5.0, 25.0), prob_background_zero=0.5),
    affine=AffineConfig(
      rotation=(-20.0, 20.0),
      scaling=(0.9, 1.1),
      shear=(-0.02, 0.02),
      translation=(0.0, 0.0),
      prob=p,
      object_size=(0.5, 1.1),
    ),
    deformation=DeformationConfig(
      std=(0.0, 4.0 * r), grid_scale=_grid(0.03, 0.06, r), steps=7, prob=p
    ),
    flip=FlipConfig(axis=0, prob=0.5),
    bias=BiasConfig(std=(0.01, 0.3), grid_scale=_grid(0.004, 0.02, r), prob=p),
    gamma=GammaConfig(std=0.1, clip=300.0, prob=p),
    resolution=ResolutionConfig(
      max_res_iso=1.5,
      max_res_aniso=1.5,
      min_res=0.5,
      prob_iso=0.1,
      random_thickness=True,
      blur_factor=0.75,
      blur_range=1.03,
      prob=p,
    ),
    noise=NoiseConfig(std=(5.0 / 255.0, 15.0 / 255.0), prob=p),
    subclusters=_fetal_subclusters(label_values, seeds, r),
    **_fetal_sr_artifacts(label_values, r),
    **_artifacts_off(),
  )
  if isinstance(priors, str):
    if priors != "fetal_t2w":
      raise ValueError(
        f"presets.fetal: priors must be an IntensityPriors, None or 'fetal_t2w', got {priors!r}"
      )
    feta = set(FETA_LABELS) <= set(int(v) for v in label_values)
    priors = priors_lib.FETAL_T2W if feta else None
  return _build(base, overrides, priors)


def _voxel_ratio(spacing) -> float:
  """FetalSynthGen's voxel size over `spacing`'s (their geometric mean): a length of `n`
  of its voxels is `n * ratio` voxels of `spacing`."""
  return FETALSYNTHGEN_SPACING / math.prod(float(s) for s in spacing) ** (1.0 / 3.0)


def _grid(low, high, r):
  """A small grid's `grid_scale` range for voxels `1 / r` times FetalSynthGen's: the same
  node spacing in mm (at most one node per voxel)."""
  return (min(1.0, low / r), min(1.0, high / r))


def _fetal_sr_artifacts(label_values, r: float = 1.0) -> dict[str, Any]:
  """FetalSynthGen's super-resolution artifacts with its documented defaults, their voxel
  lengths converted by `r` (`_voxel_ratio`).

  Cortex blur (p 0.4, 50..199 blobs in the cortex, label 2) and structural noise (p 0.4,
  std 0.2..0.4, 5..14 blobs in the white matter, label 3) need FeTA labels and stay off
  otherwise; skull-stripping boundaries (no mask / halo / fuzzy, 0.5 each) and the
  slice-stack acquisition (p 0.4, 2..6 stacks of 1.5..3.5 mm slices, slice centres 1.5..5.5
  mm apart, inter-slice motion a random walk of up to 0.5° and 0.5 mm per slice time: the
  peer replays recorded fetal trajectories, which are not public) work on any labels.
  """
  feta = set(FETA_LABELS) <= set(int(v) for v in label_values)
  return dict(
    blur_cortex=BlurCortexConfig(
      nblur=(50, 199),
      blob_sigma_scale=1.0 * r,
      blur_std_scale=1.0 * r,
      max_blur_std=10.0 * r,
      cortex_label=2,
      prob=0.4,
      enabled=feta,
    ),
    struct_noise=StructNoiseConfig(
      std=(0.2, 0.4),
      num_blobs=(5, 14),
      sigma_mean=25.0 * r,
      sigma_std=5.0 * r,
      sigma_clip=(1.0 * r, 40.0 * r),
      region_labels=(3,),
      prob=0.4,
      enabled=feta,
    ),
    boundary=BoundaryConfig(
      prob_no_mask=0.5,
      prob_halo=0.5,
      halo_radius=(max(1, round(5 * r)), max(1, round(14 * r))),
      fuzzy_width=(2.0 * r, 10.0 * r),
      fuzzy_jitter=(0.0, 3.0 * r),
      fuzzy_grid_scale=min(1.0, 0.06 / r),
      jitter_grid_scale=min(1.0, 0.3 / r),
      prob_fuzzy=0.5,
      prob=1.0,
      enabled=True,
    ),
    slice_stack=SliceStackConfig(
      num_stacks=(2, 6),
      thickness=(1.5, 3.5),
      gap=(0.0, 2.0),
      rotation_std=(0.0, 0.5),
      translation_std=(0.0, 0.5),
      prob=0.4,
      enabled=True,
    ),
  )


def _fetal_subclusters(label_values, seeds: bool, r: float = 1.0) -> SubclusterConfig:
  feta = set(FETA_LABELS) <= set(int(v) for v in label_values)
  if seeds:
    # FetalSynthGen's seed meta-labels 1..3 are CSF, GM and WM (4: non-brain tissue).
    return SubclusterConfig(
      num_subclusters=(1, 6),
      source="seeds",
      num_meta=4,
      meta_labels=FETA_META_LABELS if feta else (),
      related_metas=(1, 2, 3),
      related_std=25.0,
      prob=1.0,
      enabled=True,
    )
  return SubclusterConfig(
    num_subclusters=(1, 6),
    source="procedural",
    meta_labels=FETA_META_LABELS if feta else (),
    related_metas=(1, 2, 3) if feta else (),
    related_std=25.0,
    grid_scale=_grid(0.03, 0.08, r),
    # In half of the samples: measured on 10 real fetal T2w volumes, 4 seeds, +0.038 mean
    # Dice at 2000 steps over classes in every sample (every scan and seed gained; benchmarks/
    # RESULTS.md section 11). The other half are plain per-tissue Gaussians, as SynthSeg's.
    prob=0.5,
    enabled=True,
  )


def anatomix_views(
  label_values: Sequence[int],
  shape: Sequence[int],
  spacing: Sequence[float] = (1.0, 1.0, 1.0),
  **overrides: Any,
) -> SynthConfig:
  """Appearance randomisation for paired contrastive views (anatomix step 2).

  For `synthesize_views` on label ensembles (`synthjax.ensembles`): label values are
  arbitrary, so there are no flip pairs and no left/right flip; a mild affine and
  deformation are shared by the two views (voxel-aligned); everything that sets the
  appearance is strong and independent per view: per-label Gaussians with means U[0, 255]
  and stds U[0, 25] (background zeroed in half of the views), bias std up to 0.5 (p 0.8),
  gamma std 0.4, blur / low resolution up to 3 mm isotropic or 5 mm along one axis
  (p 0.5), Gaussian noise up to 0.05 (p 0.8), light MR artifacts (Gibbs and ghosting,
  p 0.1 each), and anatomix's multi-scale texture inside every label (4 levels of 4..32
  voxels, relative strength up to 0.2).

  Args:
    label_values: the label values of the maps (e.g. `range(num_labels)`).
    shape: output shape.
    spacing: voxel spacing in mm.
    **overrides: `SynthConfig` fields or stage dicts.
  """
  arts = _artifacts_off()
  arts["gibbs"] = GibbsConfig(alpha=(0.0, 0.6), prob=0.1, enabled=True)
  arts["ghosting"] = GhostingConfig(
    num_ghosts=(4, 10), axes=(0, 1, 2), intensity=(0.3, 0.8), restore=0.0, prob=0.1, enabled=True
  )
  base = SynthConfig(
    shape=tuple(shape),
    label_values=tuple(label_values),
    spacing=tuple(spacing),
    background=0 if 0 in tuple(label_values) else tuple(label_values)[0],
    gmm=GMMConfig(mean=(0.0, 255.0), std=(0.0, 25.0), prob_background_zero=0.5),
    affine=AffineConfig(
      rotation=(-10.0, 10.0),
      scaling=(0.9, 1.1),
      shear=(-0.01, 0.01),
      translation=(0.0, 0.0),
      prob=1.0,
    ),
    deformation=DeformationConfig(std=(0.0, 2.0), grid_scale=(0.04, 0.04), steps=7, prob=1.0),
    flip=FlipConfig(axis=0, prob=0.0, enabled=False),
    bias=BiasConfig(std=(0.0, 0.5), grid_scale=(0.025, 0.05), prob=0.8),
    gamma=GammaConfig(std=0.4, clip=300.0, prob=1.0),
    resolution=ResolutionConfig(
      max_res_iso=3.0,
      max_res_aniso=5.0,
      min_res=None,
      prob_iso=0.5,
      random_thickness=True,
      blur_factor=0.75,
      blur_range=1.03,
      prob=0.5,
    ),
    noise=NoiseConfig(std=(0.0, 0.05), prob=0.8),
    texture=TextureConfig(
      amplitude=(0.0, 0.2),
      num_scales=(4, 4),
      finest_scale=2,
      scale_weight=(0.0, 1.0),
      prob=1.0,
      enabled=True,
    ),
    **arts,
  )
  return _build(base, overrides)
