"""The sample record: what a writer stores, and its byte codec for ArrayRecord.

A sample is a dict with

* `"image"`: a 3-D float array (X, Y, Z),
* `"seg"`: an integer array of the same shape,
* `"affine"`: the (4, 4) voxel-to-world matrix,
* `"index"`: the sample's index (an int >= 0),
* `"sidecar"`: a JSON-serialisable dict (params, key, config..., see `samples.make_sidecar`).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np


def check_sample(sample: Mapping[str, Any]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, dict]:
  """Validates a sample; returns `(index, image, seg, affine float64, sidecar)`. The image
  is `(X, Y, Z)`, or `(C, X, Y, Z)` for a multi-contrast sample (`num_channels`)."""
  missing = [k for k in ("image", "seg", "affine", "index", "sidecar") if k not in sample]
  if missing:
    raise ValueError(f"sample lacks key(s) {missing}; has {sorted(sample)}")
  try:
    index = operator.index(sample["index"])
  except TypeError as e:
    raise TypeError(f"sample index must be an integer, got {sample['index']!r}") from e
  if index < 0:
    raise ValueError(f"sample index must be >= 0, got {index}")
  image, seg = np.asarray(sample["image"]), np.asarray(sample["seg"])
  affine = np.asarray(sample["affine"], np.float64)
  if image.ndim not in (3, 4):
    raise ValueError(
      f"sample {index}: image must be 3-D, or 4-D with channels first, got shape {image.shape}"
    )
  if seg.shape != image.shape[-3:]:
    raise ValueError(f"sample {index}: seg shape {seg.shape} != image shape {image.shape[-3:]}")
  if not np.issubdtype(seg.dtype, np.integer):
    raise ValueError(f"sample {index}: seg must have an integer dtype, got {seg.dtype}")
  if affine.shape != (4, 4):
    raise ValueError(f"sample {index}: affine must be 4x4, got shape {affine.shape}")
  sidecar = sample["sidecar"]
  if not isinstance(sidecar, dict):
    raise TypeError(f"sample {index}: sidecar must be a dict, got {type(sidecar).__name__}")
  # A sidecar naming another index would make replay regenerate the wrong sample.
  if "index" in sidecar and sidecar["index"] != index:
    raise ValueError(f"sample {index}: sidecar says index {sidecar['index']!r}")
  return index, image, seg, affine, sidecar


def sidecar_json(index: int, sidecar: Any, **kw: Any) -> str:
  try:
    return json.dumps(sidecar, **kw)
  except (TypeError, ValueError) as e:
    raise TypeError(f"sample {index}: sidecar is not JSON-serialisable ({e})") from e


_MAGIC = b"SJXREC1\n"
_RECORD_FORMAT = "synthjax-record/1"
_ARRAYS = ("image", "seg", "affine")


def encode_record(sample: dict[str, Any]) -> bytes:
  """Serialises a sample to bytes: a JSON header, then the raw arrays.

  Layout: 8 magic bytes, the header length (8 bytes, little-endian), a JSON header (format,
  index, sidecar, and each array's dtype and shape), then the arrays' bytes in C order. Unlike
  `np.savez` (a zip with timestamps) the bytes depend on the sample alone, so equal samples
  give equal records.

  Args:
    sample: a sample dict (see the module docstring); dtypes are kept exactly.

  Returns:
    The record bytes; `decode_record` inverts it.

  Examples:
    >>> sample = {"image": np.zeros((4, 4, 4), np.float32), "seg": np.ones((4, 4, 4), np.int16),
    ...           "affine": np.eye(4), "index": 3, "sidecar": {"seed": 0}}
    >>> rec = encode_record(sample)
    >>> decode_record(rec)["image"].dtype
    dtype('float32')
    >>> encode_record(dict(sample)) == rec     # the bytes depend on the sample alone
    True
  """
  index, image, seg, affine, sidecar = check_sample(sample)
  arrays = [np.ascontiguousarray(a) for a in (image, seg, affine)]
  header = {
    "format": _RECORD_FORMAT,
    "index": index,
    "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in zip(_ARRAYS, arrays)],
    "sidecar": sidecar,
  }
  head = sidecar_json(index, header, separators=(",", ":")).encode()
  return b"".join([_MAGIC, len(head).to_bytes(8, "little"), head, *(a.tobytes() for a in arrays)])


def read_header(record: bytes | memoryview) -> tuple[dict, int]:
  record = memoryview(record)
  if bytes(record[:8]) != _MAGIC:
    raise ValueError(f"not a synthjax record (starts with {bytes(record[:8])!r})")
  n = int.from_bytes(record[8:16], "little")
  header = json.loads(bytes(record[16 : 16 + n]))
  if header.get("format") != _RECORD_FORMAT:
    raise ValueError(f"unsupported record format {header.get('format')!r}")
  return header, 16 + n


def decode_record(record: bytes) -> dict[str, Any]:
  """Inverse of `encode_record`.

  Args:
    record: bytes written by `encode_record`.

  Returns:
    `{"image", "seg", "affine", "index", "sidecar"}` with writable arrays of the written
    dtypes and shapes, `index` an int and `sidecar` a dict.

  Raises:
    ValueError: the bytes are not a (complete) synthjax record.

  Examples:
    >>> sample = {"image": np.zeros((4, 4, 4), np.float32), "seg": np.ones((4, 4, 4), np.int16),
    ...           "affine": np.eye(4), "index": 3, "sidecar": {"seed": 0}}
    >>> back = decode_record(encode_record(sample))
    >>> back["index"], back["seg"].dtype, back["sidecar"]
    (3, dtype('int16'), {'seed': 0})
  """
  header, offset = read_header(record)
  out = {}
  for name, dtype, shape in header["arrays"]:
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if offset + count * dtype.itemsize > len(record):
      raise ValueError(
        f"truncated record: {name} needs bytes up to "
        f"{offset + count * dtype.itemsize}, record has {len(record)}"
      )
    # The copy makes the array writable and aligned (a view of bytes is neither).
    out[name] = np.frombuffer(record, dtype, count, offset).reshape(shape).copy()
    offset += count * dtype.itemsize
  out["index"] = int(header["index"])
  out["sidecar"] = header["sidecar"]
  return out
