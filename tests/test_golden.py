"""Golden outputs of each preset (and of a label ensemble): no change may alter them unless
a change of output is intended, and then `golden.json` is regenerated in the same commit:

    python tests/test_golden.py        # rewrites tests/golden.json

Per case the file holds the SHA-256 of the params JSON and of the segmentation (integers:
exact on any machine), the SHA-256 of the image bytes with the machine it was recorded on,
and a fingerprint of the image (means of 8^3 blocks). XLA may round floats differently on
another CPU, so the image bytes are compared exactly on the recording machine (same CPU
model and jax version) and through the fingerprint (1e-5) elsewhere.
"""

import hashlib
import json
import os
import platform
import subprocess
import sys

import jax
import numpy as np

import synthjax
from synthjax import ensembles

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")
SHAPE = (32, 32, 32)


def _labels(values):
  """A deterministic label map on SHAPE: concentric shells of `values` (first = outside)."""
  g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
  r = np.sqrt((g**2).sum(0)) + 0.15 * np.sin(3 * g[0]) * np.cos(2 * g[1])
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


def compute_with_default_flags():
  """`compute()` in a fresh process with XLA's default flags: the rest of the suite compiles
  with faster flags (tests/conftest.py), and this record is of what users run."""
  from conftest import without_fast_compile

  env = dict(os.environ, XLA_FLAGS=without_fast_compile(os.environ.get("XLA_FLAGS", "")))
  proc = subprocess.run(
    [sys.executable, os.path.abspath(__file__), "--print"],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout)


def test_outputs_match_the_golden_record():
  with open(GOLDEN) as f:
    record = json.load(f)
  now = compute_with_default_flags()
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


if __name__ == "__main__":
  if sys.argv[1:] == ["--print"]:
    print(json.dumps(compute()))
    sys.exit(0)
  with open(GOLDEN, "w") as f:
    json.dump({"machine": machine(), "cases": compute()}, f, indent=1)
  print(f"wrote {GOLDEN}", file=sys.stderr)
