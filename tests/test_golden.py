"""Golden outputs of each preset (and of a label ensemble): no change may alter them unless
a change of output is intended, and then `golden.json` is regenerated in the same commit.
In the same process, with XLA's default flags (what users run), element i of each preset's
batch is checked against the single call for element i, bit for bit:

    python tests/test_golden.py        # rewrites tests/golden.json

Per case the file holds the SHA-256 of the params JSON and of the segmentation (integers:
exact on any machine), the SHA-256 of the image bytes with the machine it was recorded on,
and a fingerprint of the image (means of 8^3 blocks). XLA may round floats differently on
another CPU, so the image bytes are compared exactly on the recording machine (same CPU
model and jax version) and through the fingerprint (1e-5) elsewhere.
"""

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _batches import element, stacked

import synthjax
from synthjax import data as sdata
from synthjax import ensembles

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")
SHAPE = (32, 32, 32)


def _labels(values, shift=0.0):
  """A deterministic label map on SHAPE: concentric shells of `values` (first = outside),
  the centre moved by `shift`."""
  g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
  r = np.sqrt(((g - shift) ** 2).sum(0)) + 0.15 * np.sin(3 * g[0]) * np.cos(2 * g[1])
  edges = np.linspace(1.0, 0.1, len(values))
  out = np.full(SHAPE, values[0], np.int32)
  for v, e in zip(values[1:], edges[1:]):
    out[r < e] = v
  return out


def _cases():
  fs = (0, 2, 3, 4, 41, 42, 43)
  return {
    "synthseg": (synthjax.presets.synthseg(fs, SHAPE, (1.5, 1.5, 1.5)), _labels(fs)),
    "fetal": (synthjax.presets.fetal(range(8), SHAPE, (2.0, 2.0, 2.0)), _labels(range(8))),
    "anatomix_views": (synthjax.presets.anatomix_views(range(5), SHAPE), _labels(range(5))),
  }


def _sha(*arrays):
  h = hashlib.sha256()
  for a in arrays:
    a = np.asarray(a)
    h.update(str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _fingerprint(image):
  x = np.asarray(image, np.float64)
  return x.reshape(4, 8, 4, 8, 4, 8).mean(axis=(1, 3, 5)).ravel().tolist()


def machine():
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {
    "cpu": cpu,
    "jax": jax.__version__,
    "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
  }


def compute():
  out = {}
  for name, (cfg, labels) in _cases().items():
    params = synthjax.sample_params(jax.random.key(11), cfg)
    image, seg = synthjax.synthesize(jax.random.key(12), params, labels, cfg)
    out[name] = {
      "params": hashlib.sha256(synthjax.params_to_json(params).encode()).hexdigest(),
      "seg": _sha(seg),
      "image": _sha(image),
      "fingerprint": _fingerprint(image),
    }
  ecfg = ensembles.EnsembleConfig(shape=SHAPE)
  ep = ensembles.sample_ensemble_params(jax.random.key(13), ecfg)
  lab = ensembles.render_ensemble(jax.random.key(14), ep, None, ecfg)
  out["ensemble"] = {"labels": _sha(lab)}
  return out


B = 3  # batch size of the batch-replay checks


def _batch_minus_single(images, segs, keys, params, labels, cfg):
  """Per sample: (max |image difference|, whether image and seg are bitwise equal)."""
  out = []
  for i in range(len(keys)):
    lab = labels[i] if labels.ndim == 4 else labels
    image, seg = synthjax.synthesize(keys[i], element(params, i), lab, cfg)
    a, b = np.asarray(images[i]), np.asarray(image)
    same = np.array_equal(a, b) and np.array_equal(np.asarray(segs[i]), np.asarray(seg))
    out.append((float(np.max(np.abs(a - b))), bool(same)))
  return out


def _params(key, n, cfg):
  """A batch of `n` params, drawn one by one with the sampler `compute` compiled (the
  batched sampler's equality with it is not what these records check)."""
  return stacked([synthjax.sample_params(k, cfg) for k in jax.random.split(key, n)])


def compare_batches():
  """Batches of each preset against their single calls (one batch per case), with the
  golden cases' configs, so that the single calls are the programs `compute` compiled.

  `synthseg` and `anatomix_views` batch their label maps; `fetal` closes over one map, which
  is then a constant of the batched program and an argument of the single call; `pipeline`
  renders a batch with `synthjax.data.synthesize_batch` inside a jit with the sampler;
  `sharded` a batch with `synthjax.synthesize_sharded` over two devices.
  """
  out = {}
  cases = _cases()
  for name, (cfg, labels) in cases.items():
    values = cfg.label_values
    keys = jax.random.split(jax.random.key(3), B)
    params = _params(jax.random.key(4), B, cfg)
    if name == "fetal":
      images, segs = jax.jit(
        jax.vmap(functools.partial(synthjax.synthesize, labels=labels, config=cfg))
      )(keys, params)
    else:
      labels = np.stack([_labels(values, 0.1 * i) for i in range(B)])
      images, segs = jax.jit(jax.vmap(functools.partial(synthjax.synthesize, config=cfg)))(
        keys, params, labels
      )
    out[name] = _batch_minus_single(images, segs, keys, params, labels, cfg)
  cfg = cases["synthseg"][0]
  values = cfg.label_values
  labels = np.stack([_labels(values, 0.1 * i) for i in range(B)])
  batch = {"labels": labels, "key": np.stack([sdata.sample_key_data(0, i) for i in range(B)])}
  images, segs, params = jax.jit(lambda b: sdata.synthesize_batch(b, cfg))(batch)
  keys = jnp.stack([jax.random.split(jax.random.wrap_key_data(k))[1] for k in batch["key"]])
  out["pipeline"] = _batch_minus_single(images, segs, keys, params, labels, cfg)
  devices = jax.devices()[:2]
  keys = jax.random.split(jax.random.key(7), 2 * B)
  params = _params(jax.random.key(8), 2 * B, cfg)
  labels = np.stack([_labels(values, 0.05 * i) for i in range(2 * B)])
  images, segs = synthjax.synthesize_sharded(keys, params, labels, cfg, devices=devices)
  out["sharded"] = _batch_minus_single(images, segs, keys, params, labels, cfg)
  return out


@pytest.fixture(scope="module")
def with_default_flags():
  """`compute()` and `compare_batches()` in a fresh process with XLA's default flags (and two
  host devices for the sharded batch): the rest of the suite compiles with faster flags
  (tests/conftest.py), and these records are of what users run (at the lowest optimisation
  level the fetal preset's slice stacks round differently in a batch, by up to 4e-7)."""
  from conftest import without_fast_compile

  flags = without_fast_compile(os.environ.get("XLA_FLAGS", ""))
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=2".strip(),
  )
  proc = subprocess.run(
    [sys.executable, os.path.abspath(__file__), "--print"],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_outputs_match_the_golden_record(with_default_flags):
  with open(GOLDEN) as f:
    record = json.load(f)
  now = with_default_flags["golden"]
  same_machine = record["machine"] == machine()
  for name, want in record["cases"].items():
    got = now[name]
    for field in ("params", "seg", "labels"):
      if field in want:
        assert got[field] == want[field], f"{name}: {field} changed"
    if "fingerprint" in want:
      np.testing.assert_allclose(
        got["fingerprint"], want["fingerprint"], rtol=0, atol=1e-5, err_msg=f"{name}: image changed"
      )
      if same_machine:
        assert got["image"] == want["image"], f"{name}: image bytes changed"


@pytest.mark.parametrize("case", ["synthseg", "fetal", "anatomix_views", "pipeline", "sharded"])
def test_batch_is_the_single_calls_bit_for_bit(with_default_flags, case):
  for i, (diff, same) in enumerate(with_default_flags["batches"][case]):
    assert same, f"{case}, sample {i}: max |batch - single| = {diff}"


if __name__ == "__main__":
  if sys.argv[1:] == ["--print"]:
    print(json.dumps({"golden": compute(), "batches": compare_batches()}))
    sys.exit(0)
  with open(GOLDEN, "w") as f:
    json.dump({"machine": machine(), "cases": compute()}, f, indent=1)
  print(f"wrote {GOLDEN}", file=sys.stderr)
