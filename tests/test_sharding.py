"""Batch sharded over 4 (forced host) CPU devices equals per-sample rendering."""

import os
import subprocess
import sys
import textwrap

from conftest import with_fast_compile


def test_sharded_batch_matches_single_samples():
  script = textwrap.dedent("""
      import numpy as np, jax, synthjax
      assert len(jax.devices()) == 4, jax.devices()
      cfg = synthjax.presets.synthseg((0, 1, 2), (16, 16, 16))
      rng = np.random.default_rng(0)
      labels = rng.integers(0, 3, (8, 18, 16, 14)).astype(np.int32)
      keys = jax.random.split(jax.random.key(1), 8)
      params = synthjax.sample_params(jax.random.split(jax.random.key(2), 8), cfg)
      images, segs = synthjax.synthesize_sharded(keys, params, labels, cfg)
      assert len(images.sharding.device_set) == 4, images.sharding
      for i in range(8):
        p = jax.tree.map(lambda x: x[i], params)
        image, seg = synthjax.synthesize(keys[i], p, labels[i], cfg)
        assert np.array_equal(np.asarray(segs[i]), np.asarray(seg)), i
        assert np.max(np.abs(np.asarray(images[i]) - np.asarray(image))) <= 1e-6, i
      try:
        synthjax.synthesize_sharded(keys[:6], jax.tree.map(lambda x: x[:6], params),
                                    labels[:6], cfg)
      except ValueError as e:
        assert "multiple of the 4 devices" in str(e)
      else:
        raise AssertionError("a batch of 6 on 4 devices must be refused")
      print("OK")
  """)
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": with_fast_compile("--xla_force_host_platform_device_count=4"),
  }
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
  assert out.returncode == 0 and out.stdout.strip() == "OK", out.stderr[-3000:]
