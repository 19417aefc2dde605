"""The floating dtype images are rendered in: float32, or float64 where the params are.

Params drawn by `sample_params` are float32 and so is every image. With
`jax.config.update("jax_enable_x64", True)` a user may pass float64 params (to check
gradients against finite differences, or to fit params by gradient descent); the
intensities that depend on them are then computed, and returned, in float64. Fields and
noise drawn from keys stay float32: they do not depend on the params.
"""

import jax.numpy as jnp


def real(x):
  """`x` as a floating array of at least float32 precision (float64 stays float64)."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def float_dtype(*arrays):
  """The image dtype for params `arrays`: float64 if any is float64, else float32."""
  wide = any(jnp.asarray(a).dtype == jnp.float64 for a in arrays)
  return jnp.dtype(jnp.float64 if wide else jnp.float32)
