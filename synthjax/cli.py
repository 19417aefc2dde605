"""The `synthjax` command: `generate` synthetic datasets and `replay` single samples."""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time


class UserError(Exception):
  """An error caused by the user's input: printed as one line, exit status 2."""


def _expand_sources(patterns):
  paths = []
  for pat in patterns:
    if os.path.isdir(pat):
      found = sorted(glob.glob(os.path.join(pat, "*.nii")) + glob.glob(os.path.join(pat, "*.nii.gz")))
      if not found:
        raise UserError(f"{pat}: folder holds no .nii or .nii.gz file")
      paths += found
    elif any(c in pat for c in "*?["):
      found = sorted(glob.glob(pat))
      if not found:
        raise UserError(f"{pat}: pattern matches no file")
      paths += found
    else:
      if not os.path.exists(pat):
        raise UserError(f"{pat}: no such file")
      paths.append(pat)
  return paths


def _load_sources(args):
  import numpy as np
  from synthjax._src import nifti, phantom
  if args.demo:
    if args.labels:
      raise UserError("give either --demo or LABELS, not both")
    labels, affine = phantom.brain_phantom(tuple(args.demo_shape), args.demo_spacing)
    spacing = (args.demo_spacing,) * 3
    src = {"demo": {"shape": list(args.demo_shape), "spacing": args.demo_spacing}}
    return [(labels, affine, src)], spacing
  if not args.labels:
    raise UserError("no label maps given: pass LABELS (files, folders or globs) or --demo")
  sources, spacing = [], None
  for path in _expand_sources(args.labels):
    try:
      labels, affine, sp = nifti.load_label_map(path)
    except (ValueError, FileNotFoundError) as e:
      raise UserError(str(e)) from e
    if spacing is None:
      spacing = sp
    elif not np.allclose(sp, spacing, rtol=1e-4):
      raise UserError(f"{path}: spacing {sp} differs from the first label map's {spacing}")
    sources.append((labels, affine, {"path": os.path.abspath(path)}))
  return sources, spacing


def _make_config(args, label_values, shape, spacing):
  from synthjax import presets
  from synthjax._src.config import SynthConfig
  if args.config:
    try:
      with open(args.config) as f:
        cfg = SynthConfig.from_dict(json.load(f))
    except (OSError, ValueError, TypeError) as e:
      raise UserError(f"{args.config}: not a valid config ({e})") from e
    return cfg
  build = {"synthseg": presets.synthseg, "fetal": presets.fetal}[args.preset]
  return build(tuple(label_values), tuple(shape), tuple(spacing))


def _sample_paths(out, index):
  stem = os.path.join(out, f"sample_{index:05d}")
  return stem + "_image.nii.gz", stem + "_seg.nii.gz", stem + "_params.json"


def cmd_generate(args):
  import numpy as np
  import jax
  import synthjax
  from synthjax._src import nifti, samples

  if args.n < 1:
    raise UserError(f"-n must be >= 1, got {args.n}")
  sources, spacing = _load_sources(args)
  values = sorted(set().union(*(np.unique(s[0]).tolist() for s in sources)))
  shape = tuple(args.shape) if args.shape else sources[0][0].shape
  config = _make_config(args, values, shape, spacing)
  for labels, _, src in sources:
    try:
      synthjax.validate_labels(labels, config, name=src.get("path", "demo"))
    except ValueError as e:
      raise UserError(str(e)) from e

  os.makedirs(args.output, exist_ok=True)
  planned = [p for i in range(args.n) for p in _sample_paths(args.output, i)]
  existing = [p for p in planned if os.path.exists(p)]
  if existing and not args.overwrite:
    raise UserError(f"{existing[0]}: exists ({len(existing)} sample file(s) in {args.output}); "
                    "pass --overwrite to replace them")

  nifti.write_text_atomic(os.path.join(args.output, "config.json"),
                          json.dumps(config.to_dict(), indent=1), overwrite=True)
  start = time.time()
  for i in range(args.n):
    labels, affine, src = sources[i % len(sources)]
    pkey, skey = samples.sample_keys(args.seed, i)
    params = synthjax.sample_params(pkey, config)
    image, seg = synthjax.synthesize(skey, params, labels, config)
    out_affine = samples.output_affine(affine, labels.shape, config.shape,
                                       params["crop"]["position"])
    img_path, seg_path, json_path = _sample_paths(args.output, i)
    nifti.save_nifti(img_path, np.asarray(image), out_affine, overwrite=args.overwrite)
    nifti.save_nifti(seg_path, np.asarray(seg, np.int32), out_affine, overwrite=args.overwrite)
    sidecar = samples.make_sidecar(seed=args.seed, index=i, synth_key=skey, params_key=pkey,
                                   params=params, config=config, source=src,
                                   version=synthjax.__version__)
    nifti.write_text_atomic(json_path, json.dumps(sidecar, indent=1), overwrite=args.overwrite)
    if not args.quiet:
      rate = (i + 1) / (time.time() - start)
      print(f"\r{i + 1}/{args.n} samples  {rate:.2f}/s  ETA {(args.n - i - 1) / rate:.0f}s",
            end="", file=sys.stderr, flush=True)
  if not args.quiet:
    print(file=sys.stderr)
  print(f"wrote {args.n} samples to {args.output}")


def cmd_replay(args):
  import numpy as np
  import synthjax
  from synthjax._src import nifti, phantom, samples
  from synthjax._src.config import SynthConfig

  try:
    with open(args.params) as f:
      side = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{args.params}: cannot read params JSON ({e})") from e
  if side.get("format") != samples.SIDECAR_FORMAT:
    raise UserError(f"{args.params}: not a synthjax sample file (format {side.get('format')!r})")
  config = SynthConfig.from_dict(side["config"])
  params = synthjax.params_from_json(side["params"], config)
  key = synthjax.key_from_json(side["key"])
  src = side["source"]
  if "demo" in src:
    labels, affine = phantom.brain_phantom(tuple(src["demo"]["shape"]), src["demo"]["spacing"])
  else:
    try:
      labels, affine, _ = nifti.load_label_map(src["path"])
    except (ValueError, FileNotFoundError) as e:
      raise UserError(f"label source of {args.params}: {e}") from e
  image, seg = synthjax.synthesize(key, params, labels, config)
  out_affine = samples.output_affine(affine, labels.shape, config.shape,
                                     np.asarray(params["crop"]["position"]))
  os.makedirs(args.output, exist_ok=True)
  stem = os.path.join(args.output, f"sample_{side['index']:05d}")
  nifti.save_nifti(stem + "_image.nii.gz", np.asarray(image), out_affine, overwrite=args.overwrite)
  nifti.save_nifti(stem + "_seg.nii.gz", np.asarray(seg, np.int32), out_affine,
                   overwrite=args.overwrite)
  print(f"replayed sample {side['index']} to {stem}_image.nii.gz")


def build_parser():
  parser = argparse.ArgumentParser(
      prog="synthjax", description="Synthetic images from label maps, with exact replay.")
  parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
  sub = parser.add_subparsers(dest="command", required=True)

  g = sub.add_parser("generate", help="write N synthetic samples (image, seg, params JSON)")
  g.add_argument("labels", nargs="*", metavar="LABELS", help="label maps: files, folders or globs")
  g.add_argument("-o", "--output", required=True, help="output folder")
  g.add_argument("-n", type=int, default=1, help="number of samples")
  g.add_argument("--seed", type=int, default=0)
  g.add_argument("--preset", choices=("synthseg", "fetal"), default="synthseg")
  g.add_argument("--config", help="a config JSON (SynthConfig.to_json) instead of a preset")
  g.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                 help="output shape (default: the first label map's)")
  g.add_argument("--demo", action="store_true", help="use the built-in brain phantom")
  g.add_argument("--demo-shape", type=int, nargs=3, default=(96, 96, 96), help=argparse.SUPPRESS)
  g.add_argument("--demo-spacing", type=float, default=2.0, help=argparse.SUPPRESS)
  g.add_argument("--overwrite", action="store_true", help="replace existing sample files")
  g.add_argument("--quiet", action="store_true", help="no progress line")
  g.set_defaults(func=cmd_generate)

  r = sub.add_parser("replay", help="regenerate one sample bit for bit from its params JSON")
  r.add_argument("params", help="a sample_XXXXX_params.json written by generate")
  r.add_argument("-o", "--output", required=True, help="output folder")
  r.add_argument("--overwrite", action="store_true", help="replace existing files")
  r.set_defaults(func=cmd_replay)
  return parser


def main(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    args.func(args)
  except (UserError, FileExistsError) as e:
    if args.debug:
      raise
    print(f"synthjax {args.command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"synthjax {args.command}: interrupted", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
