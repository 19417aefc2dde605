"""Static, hashable generator configuration.

Every field is a Python scalar or a tuple, so a `SynthConfig` can be passed as a static
argument to `jax.jit` and used as a dictionary key. Stage configs carry the ranges that
`sample_params` draws from and the probability that the stage is applied; `enabled=False`
removes a stage from the compiled program altogether.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from synthjax._src.checks import (JsonConfig, axes, choice, config_class, field, flag,
                                  int_range, integer, integers, label_groups, optional,
                                  positive, positives, prob, real, real_range, sizes)

Range = tuple[float, float]

SLICE_PROFILES = ("gaussian", "boxcar", "triangle")


@config_class
class GMMConfig:
  """Per-label Gaussian intensities (SynthSeg's `SampleConditionalGMM`).

  Attributes:
    mean: range of the uniform prior on each label's mean intensity.
    std: range of the uniform prior on each label's standard deviation.
    prob_background_zero: probability that the background label gets mean 0 and std 0.
  """
  mean: Range = field((0.0, 250.0), real_range())
  std: Range = field((0.0, 30.0), real_range(low=0.0))
  prob_background_zero: float = field(0.05, prob())
  prob: float = field(1.0, prob())  # kept for a uniform stage interface; the GMM is always rendered.
  enabled: bool = field(True, flag())


@config_class
class AffineConfig:
  """Random affine transform about the centre of the output field of view.

  The transform maps each output voxel to the point of the label map it samples (SynthSeg's
  convention), so `scaling` scales the *sampling grid*: a factor `s > 1` covers a larger
  part of the map and the anatomy appears `1 / s` times its size; `s < 1` enlarges it.
  TorchIO's `RandomAffine(scales=...)` is the inverse (a factor above 1 enlarges).
  `object_size` is the plain-language control: an isotropic factor on the anatomy's size
  (0.5 renders it at half its linear size), drawn once per sample on top of `scaling`.

  Attributes:
    rotation: range of each of the three rotation angles, in degrees (within ±180).
    scaling: range of each axis' sampling-grid factor (drawn per axis: also changes the
      aspect ratio); the anatomy appears `1 / scaling` times its size.
    shear: range of each of the six shear terms.
    translation: range of each axis' translation, in mm.
    object_size: optional range of the isotropic size factor of the anatomy (`None`: no
      such draw, and no `object_size` entry in the params).

  Examples:
    >>> AffineConfig(object_size=(0.5, 1.1)).object_size   # half to 1.1x the map's size
    (0.5, 1.1)
  """
  rotation: Range = field((-15.0, 15.0), real_range(low=-180.0, high=180.0))
  scaling: Range = field((0.8, 1.2), real_range(low=0.0, low_open=True))
  shear: Range = field((-0.012, 0.012), real_range())
  translation: Range = field((0.0, 0.0), real_range())
  prob: float = field(1.0, prob())
  enabled: bool = field(True, flag())
  object_size: Optional[Range] = field(None, optional(real_range(low=0.0, low_open=True)))


@config_class
class DeformationConfig:
  """Stationary velocity field integrated by scaling and squaring (SynthSeg, VoxelMorph).

  The velocity is drawn on a grid of `ceil(grid_scale * shape)` nodes per axis with a
  standard deviation `std` (voxels of the output grid), upsampled to half resolution,
  integrated there in `steps` squarings and upsampled to the output grid.

  Attributes:
    std: range of the velocity standard deviation, in output voxels.
    grid_scale: range of the ratio between the small grid and the output shape. A range
      (FetalSynthGen's `nonlin_scale`) draws the grid size per sample.
    steps: number of squarings.
  """
  std: Range = field((0.0, 4.0), real_range(low=0.0))
  grid_scale: Range = field((0.04, 0.04), real_range(low=0.0, high=1.0, low_open=True))
  steps: int = field(7, integer(low=0))
  prob: float = field(1.0, prob())
  enabled: bool = field(True, flag())


@config_class
class FlipConfig:
  """Left/right flip with swap of the paired labels (SynthSeg's `RandomFlip`).

  The mirror is applied to the output grid inside the coordinate map, before the
  deformation: without deformation the output is exactly mirrored; with it, the sample is
  the mirror of one drawn with the mirrored (equally likely) deformation field.

  Attributes:
    axis: the array axis that runs left to right (0 for RAS-oriented volumes).
  """
  axis: int = field(0, integer(low=0, high=2))
  prob: float = field(0.5, prob())
  enabled: bool = field(True, flag())


@config_class
class BiasConfig:
  """Multiplicative smooth bias field `exp(N(0, std))` drawn on a small grid.

  Attributes:
    std: range of the log-field standard deviation.
    grid_scale: range of the ratio between the small grid and the output shape.
  """
  std: Range = field((0.0, 0.7), real_range(low=0.0))
  grid_scale: Range = field((0.025, 0.025), real_range(low=0.0, high=1.0, low_open=True))
  prob: float = field(0.95, prob())
  enabled: bool = field(True, flag())


@config_class
class GammaConfig:
  """Gamma transform `x ** exp(g)`, `g ~ N(0, std)`, on the [0, 1]-normalised image.

  Attributes:
    std: standard deviation of the log-gamma.
    clip: intensities are clipped to [0, clip] before normalisation (SynthSeg: 300).
  """
  std: float = field(0.5, real(low=0.0))
  clip: float = field(300.0, positive())
  prob: float = field(1.0, prob())
  enabled: bool = field(True, flag())


@config_class
class ResolutionConfig:
  """Acquisition resolution simulation (SynthSeg's `SampleResolution`, `MimicAcquisition`).

  With probability `prob_iso` the acquisition is isotropic at `U[min_res, max_res_iso]`;
  otherwise one random axis gets `U[min_res, max_res_aniso]` and the others `min_res`.
  The slice thickness is `U[min_res, resolution]` per axis when `random_thickness`, else the
  resolution. The image is blurred along each axis by the slice profile of that axis'
  thickness, sampled on the low-resolution grid and linearly interpolated back onto the
  output grid.

  Attributes:
    min_res: lowest resolution in mm; `None` means the config spacing (per axis).
    blur_factor: Gaussian profile only: `sigma = blur_factor * thickness / spacing` voxels
      (SynthSeg's rule; 0.5 voxel on axes at the native resolution).
    blur_range: the profile's width (sigma or full width) is scaled by
      `U[1/blur_range, blur_range]`.
    slice_profile: "gaussian" (SynthSeg), "boxcar" (the average over a slab of full width
      `thickness`, with fractional end weights) or "triangle" (that boxcar convolved with
      itself: full width at half maximum `thickness`, base `2 * thickness`).
  """
  max_res_iso: float = field(4.0, positive())
  max_res_aniso: float = field(8.0, positive())
  min_res: Optional[float] = field(None, optional(positive()))
  prob_iso: float = field(0.1, prob())
  random_thickness: bool = field(True, flag())
  blur_factor: float = field(0.75, positive())
  blur_range: float = field(1.03, real(low=1.0))
  slice_profile: str = field("gaussian", choice(SLICE_PROFILES))
  prob: float = field(0.95, prob())
  enabled: bool = field(True, flag())


@config_class
class NoiseConfig:
  """Additive Gaussian noise on the [0, 1]-normalised image.

  Attributes:
    std: range of the noise standard deviation (FetalSynthGen's 5..15 on a 0..255 scale is
      (5/255, 15/255) here).
  """
  std: Range = field((0.0, 0.0), real_range(low=0.0))
  prob: float = field(0.0, prob())
  enabled: bool = field(True, flag())


@config_class
class SpikeConfig:
  """k-space spike (herringbone) artifact, as TorchIO's `RandomSpike`.

  `n ~ U{num_spikes}` spikes at positions `U[0, 1)^3` (fractions of the centred k-space,
  coefficient `floor(position * shape)` of `fftshift(fftn(x))`) each get `intensity * max|k|`
  added (TorchIO's spike); the image is the magnitude of the inverse transform. Positions
  are recorded for `num_spikes[1]` spikes; those past `n` are masked.

  Attributes:
    num_spikes: range of the (integer) number of spikes; the high end fixes the params shape.
    intensity: range of the spike magnitude relative to the maximum k-space magnitude.
  """
  num_spikes: tuple[int, int] = field((1, 1), int_range(low=0, high_at_least=1, what="spike"))
  intensity: Range = field((1.0, 3.0), real_range())
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


@config_class
class GhostingConfig:
  """Ghosting along a phase-encoding axis, as TorchIO's `RandomGhosting`.

  Along the drawn `axis`, every `num_ghosts`-th line of the centred k-space (indices
  `0, n, 2n, ...`) is scaled by `1 - intensity`, which puts ghosts every
  `shape[axis] / num_ghosts` voxels in the image. The lines at frequencies
  `|f| <= round(restore * shape[axis]) // 2` are left untouched (with `restore = 0`, only
  the central line: TorchIO's default). The image is the magnitude of the inverse transform.

  Attributes:
    num_ghosts: range of the (integer) line period `n`; 0 means no ghosting.
    axes: the axes the phase-encoding axis is drawn from (uniformly).
    intensity: range of the artifact strength (0: no ghosts; 1: the lines are zeroed).
    restore: fraction of the k-space lines about the centre that are restored.
  """
  num_ghosts: tuple[int, int] = field((4, 10), int_range(low=0))
  axes: tuple[int, ...] = field((0, 1, 2), axes())
  intensity: Range = field((0.5, 1.0), real_range(low=0.0))
  restore: float = field(0.0, real(low=0.0, high=1.0))
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


@config_class
class GibbsConfig:
  """Gibbs ringing by k-space truncation (MONAI's `RandGibbsNoise`, with a box).

  k-space frequencies with `|f| > (1 - alpha) * shape / 2` along any axis are zeroed (a
  centred box keeping a fraction `1 - alpha` of each axis' band, as a smaller acquisition
  matrix; MONAI uses a ball) and the image is the magnitude of the inverse transform.

  Attributes:
    alpha: range of the truncation strength in [0, 1] (0: identity; 1: only the mean left).
  """
  alpha: Range = field((0.0, 0.8), real_range(low=0.0, high=1.0))
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


@config_class
class RicianConfig:
  """Rician noise `sqrt((x + n1)^2 + n2^2)`, `n1, n2 ~ N(0, std)` (MONAI's `RandRicianNoise`).

  The noise of a magnitude image reconstructed from complex data with Gaussian noise; on
  the [0, 1]-normalised image, after the k-space artifacts and before the Gaussian `noise`
  stage (an alternative to it: enable one or the other, or both).

  Attributes:
    std: range of the standard deviation of each of the two Gaussian components.
  """
  std: Range = field((0.0, 0.05), real_range(low=0.0))
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


@config_class
class SubclusterConfig:
  """Sub-label intensity classes (FetalSynthGen's seeds, `ImageFromSeeds`).

  Labels are merged into meta-labels and each meta-label `m` is split into `K_m` subclusters,
  `K_m ~ U{num_subclusters}` per sample, each with its own Gaussian drawn from the GMM
  priors (`SynthConfig.gmm`). Voxels outside every meta-label keep their label's Gaussian.

  Two sources of the split:

  * `"procedural"` (no files): meta-label `m` is the group `meta_labels[m - 1]` of label
    values (by default every non-background label on its own); a smooth random field `f`
    (a small Gaussian grid of `grid_scale * shape` nodes, upsampled, standardised) splits it
    into `K_m` level-set regions, subcluster `floor(K_m * frac(Phi(f) + phase_m))`.
  * `"seeds"`: precomputed seed maps in FetalSynthGen's layout, passed to `synthesize` as
    `seeds` (`(max_subclusters, X, Y, Z)`, entry `K - 1` holding the union over meta-labels
    of the `subclasses_K` maps, voxel values `10 * m + k`; see
    `synthjax.data.load_seed_maps`).

  Related classes (FetalSynthGen's `generation_classes`): for meta-labels listed in
  `related_metas`, the subcluster means are `clip(mu_m + related_std * N(0, 1), 0,
  gmm.mean[1])` about one shared mean `mu_m` instead of independent draws.

  Attributes:
    num_subclusters: range of the (integer) number of subclusters per meta-label; the high
      end (at most 10) fixes the params shape.
    source: `"procedural"` or `"seeds"`.
    meta_labels: procedural source: groups of label values forming meta-labels 1, 2, ...;
      `()` makes every non-background label its own meta-label.
    num_meta: seeds source: the number of meta-labels (values `10 * m + k`, m = 1..num_meta).
    related_metas: meta-labels (1-based) whose subclusters share a mean.
    related_std: spread of related subcluster means about their shared mean.
    grid_scale: procedural source: range of the split field's grid / shape ratio.
  """
  num_subclusters: tuple[int, int] = field((1, 6), int_range(low=1, high=10))
  source: str = field("procedural", choice(("procedural", "seeds")))
  meta_labels: tuple[tuple[int, ...], ...] = field((), label_groups())
  num_meta: int = field(4, integer(low=1))
  related_metas: tuple[int, ...] = field((), integers(low=1, distinct=True))
  related_std: float = field(25.0, real(low=0.0))
  grid_scale: Range = field((0.03, 0.08), real_range(low=0.0, high=1.0, low_open=True))
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


@config_class
class ImageIntensityConfig:
  """A real image as the intensity prior (FetalSynthGen's `image_as_intensity`).

  Where applied, the image passed to `synthesize` as `image` is deformed with the labels'
  coordinate map (trilinear), min-max scaled to [0, scale] and used instead of the GMM
  intensities; the rest of the pipeline (bias, gamma, resolution, artifacts) follows.

  Attributes:
    scale: the intensity range the image is scaled to (the GMM's 0..255 scale).
  """
  scale: float = field(255.0, positive())
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


@config_class
class MotionConfig:
  """Rigid motion during the acquisition, as TorchIO's `RandomMotion`.

  Attributes:
    degrees: range of each movement's three rotation angles, in degrees (TorchIO: ±10).
    translation: range of each movement's three translations, in mm (TorchIO: ±10).
    num_transforms: range of the (integer) number of movements; the high end fixes the
      params shape. TorchIO's default is exactly 2 movements, (2, 2).
    axes: the axes the segment (slow phase-encoding) axis is drawn from, uniformly.
      TorchIO always segments the last axis, (2,).
    perturbation: jitter of each movement time, as a fraction of the interval
      `1 / (n + 1)` between evenly spaced times (TorchIO: 0.3); at most 0.5 keeps the
      times ordered.
  """
  degrees: Range = field((-10.0, 10.0), real_range())
  translation: Range = field((-10.0, 10.0), real_range())
  num_transforms: tuple[int, int] = field((2, 2), int_range(low=0, high_at_least=1,
                                                             what="movement"))
  axes: tuple[int, ...] = field((2,), axes())
  perturbation: float = field(0.3, real(low=0.0, high=0.5))
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


@config_class
class SliceStackConfig:
  """Slice-stack acquisition with inter-slice motion and reconstruction (see module doc).

  Defaults mirror FetalSynthGen's `SimulateMotion` scanner where it has an equivalent:
  thickness U[1.5, 3.5] mm (`slice_thickness_min/max`); its `gap` U[1.5, 5.5] mm is the
  distance between slice centres, which here is `thickness + gap`: gap U[0, 2] mm gives
  centre distances in [1.5, 5.5] mm. The peer draws 2-6 stacks; the default here is 2-3
  (one per orientation; the cost grows linearly with the number of stack slots). The
  peer's motion comes from recorded fetal trajectories; here a random walk with steps of
  up to 1 degree / 1 mm per slice reaches a few degrees / mm within a stack of ~40 slices.

  Attributes:
    num_stacks: range of the (integer) number of stacks; the high end, rounded up to a
      multiple of `len(axes)`, is the (static) number of stack slots.
    axes: the slice axes, in slot order (stack slot `i` uses `axes[i % len(axes)]`).
    thickness: range of each stack's slice thickness (FWHM of the slice profile), in mm.
    gap: range of each stack's gap between slices, in mm (negative: overlapping slices);
      `thickness[0] + gap[0]` must be positive.
    rotation_std: range of each stack's random-walk step std of the three rotation angles
      (degrees per slice time).
    translation_std: range of each stack's random-walk step std of the three translations
      (mm per slice time).
  """
  num_stacks: tuple[int, int] = field((2, 3), int_range(low=1))
  axes: tuple[int, ...] = field((0, 1, 2), axes())
  thickness: Range = field((1.5, 3.5), real_range(low=0.0, low_open=True))
  gap: Range = field((0.0, 2.0), real_range())
  rotation_std: Range = field((0.0, 1.0), real_range(low=0.0))
  translation_std: Range = field((0.0, 1.0), real_range(low=0.0))
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())

  def _check_together(self):
    if self.thickness[0] + self.gap[0] <= 0:
      raise ValueError("SliceStackConfig.gap: thickness[0] + gap[0] (the smallest distance "
                       f"between slice centres) must be positive, got thickness {self.thickness}"
                       f" and gap {self.gap}")


@config_class
class StructNoiseConfig:
  """Structural noise in a region (FetalSynthGen's `StructNoise`, an SR artifact).

  A multi-scale noise field (`num_stages` levels from half resolution down, normalised to
  `max |.| = 1`) is added with weight `std` to the [0, 1] image and clamped to
  `[0, 2 max x]`; the result is blended into the image with a mixture of `num_blobs`
  isotropic Gaussian blobs (widths `clip(N(sigma_mean, sigma_std), *sigma_clip)` voxels)
  centred at random voxels of the region (FetalSynthGen: the white matter, label 3 of
  FeTA). An empty region leaves the image unchanged.

  Defaults mirror FetalSynthGen's documented configuration (`docs/sr_artif_api.md`:
  `std_min 0.2, std_max 0.4, nloc_min 5, nloc_max 15`, `nstages` 1..5, `sigma_mu 25`,
  `sigma_std 5`, clamp [1, 40]), with numpy's exclusive upper bounds made inclusive
  (`randint(5, 15)` is 5..14, `randint(1, 5)` is 1..4). FetalSynthGen's stage is optional
  (absent from its default generator; its docs suggest `prob 0.4`), so here it is off by
  default: `enabled=False`, `prob=0`.

  Attributes:
    std: range of the noise weight (on the [0, 1] image).
    num_blobs: range of the (integer) number of blobs (FetalSynthGen's `nloc`); the high end
      fixes the params shape.
    num_stages: range of the (integer) number of noise levels (FetalSynthGen's `nstages`).
    sigma_mean, sigma_std: mean and std of the Gaussian prior on each blob's width, voxels.
    sigma_clip: the blob widths are clipped to this range (voxels).
    region_labels: label values whose voxels may hold blob centres (FetalSynthGen's
      `wm_label`); used by the generator to build the region mask.
  """
  std: Range = field((0.2, 0.4), real_range(low=0.0))
  num_blobs: tuple[int, int] = field((5, 14), int_range(low=0, high_at_least=1, what="blob"))
  num_stages: tuple[int, int] = field((1, 4), int_range(low=1))
  sigma_mean: float = field(25.0, real(low=0.0))
  sigma_std: float = field(5.0, real(low=0.0))
  sigma_clip: Range = field((1.0, 40.0), real_range(low=0.0, low_open=True))
  region_labels: tuple[int, ...] = field((3,), integers())
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


@config_class
class TextureConfig:
  """Multi-scale multiplicative texture inside labels (anatomix's Perlin texture).

  The GMM intensities are multiplied by `1 + amplitude[label] * noise` (clipped at 0), where
  `noise` is a unit-std multi-scale field: `num_scales` levels from a finest grid of
  `shape / 2**finest_scale` nodes, level `i` weighted by `U[scale_weight]`.

  anatomix (`step2_generate_views.py`) multiplies the GMM image by `1 + 0.02 * perlin`,
  `perlin` the sum of four levels at scales 4, 8, 16, 32 voxels (grids `n/4 .. n/32`)
  with per-level std `U[0, 5]`: a modulation of std `0.02 * sqrt(sum std_i^2)`, between 0
  and 0.2 (0.12 on average). The defaults mirror it: `finest_scale=2`, `num_scales=(4, 4)`,
  `scale_weight=(0, 1)`, and amplitudes `U[0, 0.2]` (the std of the relative modulation,
  one per label here; fix them equal for anatomix's single field). Off by default.

  Attributes:
    amplitude: range of each label's modulation std.
    num_scales: range of the (integer) number of active levels (finest first).
    finest_scale: static pyramid level of the finest grid (`ceil(n / 2**finest_scale)`).
    scale_weight: range of the per-level weights (relative stds).
  """
  amplitude: Range = field((0.0, 0.2), real_range(low=0.0))
  num_scales: tuple[int, int] = field((4, 4), int_range(low=1))
  finest_scale: int = field(2, integer(low=0))
  scale_weight: Range = field((0.0, 1.0), real_range(low=0.0))
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


@config_class
class BlurCortexConfig:
  """Local blur of the cortex (FetalSynthGen's `BlurCortex`).

  The image is blurred with per-axis Gaussian stds `~ Gamma(blur_std_shape,
  blur_std_scale)` voxels, and mixed back inside `nblur ~ U{nblur}` Gaussian blobs whose
  per-axis sigmas are `~ Gamma(blob_sigma_shape, blob_sigma_scale)` voxels and whose centres
  are cortex voxels (the `region_mask` given to `apply_blur_cortex`).

  Attributes:
    nblur: inclusive range of the number of blobs; `nblur[1]` fixes the params shape. The
      peer's default `randint(50, 200)` is `(50, 199)`.
    blob_sigma_shape, blob_sigma_scale: Gamma prior of the blob sigmas (peer: 3, 1).
    blur_std_shape, blur_std_scale: Gamma prior of the blur stds (peer: 2, 1).
    max_blur_std: blur stds are clipped to this (voxels), which bounds the static kernel
      radius (`P(Gamma(2, 1) > 10) ~ 5e-4`).
    frontal_prior: draw centres with the peer's prior (two isotropic Gaussians at both ends
      of axis 0); `False` draws them uniformly in the region.
    cortex_label: label value of the cortex (FeTA: 2), for the pipeline to build the
      region mask; `apply_blur_cortex` itself takes the mask.
  """
  nblur: tuple[int, int] = field((50, 199), int_range(low=0, high_at_least=1, what="blob"))
  blob_sigma_shape: float = field(3.0, positive())
  blob_sigma_scale: float = field(1.0, positive())
  blur_std_shape: float = field(2.0, positive())
  blur_std_scale: float = field(1.0, positive())
  max_blur_std: float = field(10.0, positive())
  frontal_prior: bool = field(True, flag())
  cortex_label: int = field(2, integer())
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


@config_class
class BoundaryConfig:
  """Brain-extraction boundaries (FetalSynthGen's `SimulatedBoundaries`).

  When applied, with probability `prob_no_mask` the image is left as is; otherwise it is
  multiplied by a mask built from the foreground (`seg > 0`): with probability `prob_halo`
  the foreground dilated by a ball of radius `U{halo_radius}` voxels, and with probability
  `prob_fuzzy` irregular "fuzzy" boundaries that extend the (halo) mask further by a
  spatially varying radius `fuzzy_width * u_c(x) + fuzzy_jitter * u_f(x)` voxels, with
  `u_c`, `u_f` in [0, 1] smooth random fields (linear upsampling of uniform values on grids
  of `ceil(scale * n)` nodes per axis).

  The fuzzy mask approximates the peer's morphology loop (random band pixels, 27-neighbour
  threshold and closing repeated 2..4 times, then per-surface-voxel dilation levels from a
  mixture of ~100 Gaussian blobs of sigma ~8..18): like it, it contains the (halo) mask and
  extends it by a smoothly varying depth (coarse field) with a ragged fringe (fine field);
  it is not the same distribution of shapes.

  Attributes:
    prob_no_mask: probability of no masking (peer: 0.5).
    prob_halo: probability of the halo when masking (peer: 0.5).
    halo_radius: inclusive range of the halo ball radius in voxels (peer: `randint(5, 15)`).
    prob_fuzzy: probability of fuzzy boundaries when masking (peer: 0.5).
    fuzzy_width: range of the maximal smooth extension, in voxels.
    fuzzy_jitter: range of the maximal ragged extension, in voxels.
    fuzzy_grid_scale: node count / shape of the coarse field (256 -> 16 nodes).
    jitter_grid_scale: node count / shape of the fine field (256 -> 77 nodes).
  """
  prob_no_mask: float = field(0.5, prob())
  prob_halo: float = field(0.5, prob())
  halo_radius: tuple[int, int] = field((5, 14), int_range(low=0))
  prob_fuzzy: float = field(0.5, prob())
  fuzzy_width: Range = field((2.0, 10.0), real_range(low=0.0))
  fuzzy_jitter: Range = field((0.0, 3.0), real_range(low=0.0))
  fuzzy_grid_scale: float = field(0.06, real(low=0.0, high=1.0, low_open=True))
  jitter_grid_scale: float = field(0.3, real(low=0.0, high=1.0, low_open=True))
  prob: float = field(0.0, prob())
  enabled: bool = field(False, flag())


def _positive_prob(stage: dict) -> bool:
  try:
    return float(stage.get("prob", 0)) > 0
  except (TypeError, ValueError):
    return False  # the stage's own check names the bad value


def getattr_fields(obj) -> dict:
  """A dataclass's fields as a shallow dict (nested dataclasses kept as they are)."""
  return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


# Label values are stored as int32 on the device.
LABEL_MAX = 2 ** 31 - 1


def as_stage(name: str, typ: type, value: Any):
  """A stage config from an instance of `typ` or a dict of its fields."""
  if isinstance(value, dict):
    known = {f.name for f in dataclasses.fields(typ)}
    unknown = sorted(set(value) - known)
    if unknown:
      raise TypeError(f"{name} has no field(s) {unknown}; its fields are {sorted(known)}")
    value = typ(**value)
  if not isinstance(value, typ):
    raise TypeError(f"{name} must be a {typ.__name__}, got {type(value).__name__}")
  return value


@config_class
class SynthConfig(JsonConfig):
  """Everything static about a generator: shapes, label tables and stage ranges.

  Attributes:
    shape: output shape `(X, Y, Z)`. Larger label maps are randomly cropped to it, smaller
      ones padded with `background`.
    label_values: the generation label values, in a fixed order (each gets a Gaussian).
    spacing: voxel spacing in mm of the label maps and of the output.
    output_labels: the segmentation value of each generation label (same length as
      `label_values`), e.g. 0 for labels merged into background; `None` keeps them.
    flip_pairs: `(left, right)` generation-label pairs swapped by a left/right flip.
    background: the label value used for padding and for `prob_background_zero`.
    affine, deformation, flip, gmm, bias, gamma, resolution, noise: the stage configs.
    spike, ghosting, gibbs, rician: the MR artifact stages (disabled unless asked for).
    subclusters, image_intensity: FetalSynthGen's intensity models (disabled unless asked
      for).
    motion: k-space rigid motion (TorchIO's `RandomMotion`; disabled unless asked for).
    slice_stack: FetalSynthGen's slice-stack acquisition with inter-slice motion and
      reconstruction onto the volume grid (disabled unless asked for).
    texture: anatomix's multi-scale texture inside labels (disabled unless asked for).
    struct_noise: FetalSynthGen's structural noise in a label (disabled unless asked for).
    blur_cortex, boundary: FetalSynthGen's cortex blur and skull-stripping boundaries
      (disabled unless asked for).

  Examples:
    >>> cfg = SynthConfig(shape=(32, 32, 32), label_values=(0, 1, 2))
    >>> hash(cfg) == hash(SynthConfig(shape=(32, 32, 32), label_values=(0, 1, 2)))
    True
  """
  shape: tuple[int, int, int] = field(dataclasses.MISSING, sizes(3, low=2))
  label_values: tuple[int, ...] = field(dataclasses.MISSING, integers(
      low=0, high=LABEL_MAX, distinct=True, nonempty=True))
  spacing: tuple[float, float, float] = field((1.0, 1.0, 1.0), positives(3))
  output_labels: Optional[tuple[int, ...]] = field(None, optional(integers(high=LABEL_MAX)))
  flip_pairs: tuple[tuple[int, int], ...] = field((), label_groups())
  background: int = field(0, integer())
  affine: AffineConfig = AffineConfig()
  deformation: DeformationConfig = DeformationConfig()
  flip: FlipConfig = FlipConfig()
  gmm: GMMConfig = GMMConfig()
  bias: BiasConfig = BiasConfig()
  gamma: GammaConfig = GammaConfig()
  resolution: ResolutionConfig = ResolutionConfig()
  noise: NoiseConfig = NoiseConfig()
  spike: SpikeConfig = SpikeConfig()
  ghosting: GhostingConfig = GhostingConfig()
  gibbs: GibbsConfig = GibbsConfig()
  rician: RicianConfig = RicianConfig()
  subclusters: SubclusterConfig = SubclusterConfig()
  image_intensity: ImageIntensityConfig = ImageIntensityConfig()
  motion: MotionConfig = MotionConfig()
  slice_stack: SliceStackConfig = SliceStackConfig()
  texture: TextureConfig = TextureConfig()
  struct_noise: StructNoiseConfig = StructNoiseConfig()
  blur_cortex: BlurCortexConfig = BlurCortexConfig()
  boundary: BoundaryConfig = BoundaryConfig()

  def _check_together(self):
    values = self.label_values
    if self.background not in values:
      raise ValueError(f"SynthConfig.background {self.background} is not in label_values")
    if self.output_labels is not None and len(self.output_labels) != len(values):
      raise ValueError(f"SynthConfig.output_labels has {len(self.output_labels)} entries for "
                       f"{len(values)} label_values")
    for pair in self.flip_pairs:
      if len(pair) != 2:
        raise ValueError(f"SynthConfig.flip_pairs must hold (left, right) pairs, got {pair}")
      for v in pair:
        if v not in values:
          raise ValueError(f"SynthConfig.flip_pairs names label {v}, which is not in label_values")
    for name, typ in _STAGE_TYPES.items():
      object.__setattr__(self, name, as_stage(f"SynthConfig.{name}", typ, getattr(self, name)))

  @property
  def num_labels(self) -> int:
    return len(self.label_values)

  @property
  def segmentation_values(self) -> tuple[int, ...]:
    """The output segmentation value of each generation label."""
    return self.output_labels if self.output_labels is not None else self.label_values

  def replace(self, **changes) -> "SynthConfig":
    """Returns a copy with fields replaced; a dict for a stage updates that stage's fields.

    A stage dict with `prob > 0` for a disabled stage also enables it (unless it sets
    `enabled` itself).
    """
    unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
    if unknown:
      raise TypeError(f"SynthConfig has no field(s) {sorted(unknown)}")
    for name, value in list(changes.items()):
      if name in _STAGE_TYPES and isinstance(value, dict):
        stage = getattr(self, name)
        value = dict(getattr_fields(stage), **value)
        # Asking for a positive probability on a disabled stage means "use this stage".
        if not stage.enabled and "enabled" not in changes[name] and _positive_prob(value):
          value["enabled"] = True
        changes[name] = as_stage(f"SynthConfig.{name}", _STAGE_TYPES[name], value)
    return dataclasses.replace(self, **changes)



# Each stage's config type, from SynthConfig's own fields: a stage is a field whose default
# is a stage config dataclass.
_STAGE_TYPES = {f.name: type(f.default) for f in dataclasses.fields(SynthConfig)
                if dataclasses.is_dataclass(f.default)}
