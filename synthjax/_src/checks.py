"""Declared field converters for the static config dataclasses.

A config field declares what it holds with `field(default, check)`; the class decorator
`config_class` makes the class a frozen dataclass whose `__post_init__` runs every field's
check, stores the normalised value (Python floats, ints, bools and tuples, so the config
hashes), then runs the class's own `_check_together` for rules across fields.

One check per concept (a number, a range, an integer, an integer range, a probability, a
flag, axes, a choice, label values), each raising `ValueError` with the field's name
(`AffineConfig.rotation`) and the value it got. Every float is finite, every bool is a
real bool (`"no"` and `1` are refused), and every integer field is an integer (`32.9` is
refused, `32.0` from JSON is taken as 32).

Examples:
  >>> @config_class
  ... class Blur:
  ...   sigma: tuple = field(default=(0.0, 1.0), check=real_range(low=0.0))
  >>> Blur(sigma=[0, 2]).sigma
  (0.0, 2.0)
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

# A version check rather than try/except ImportError, so that type checkers see only the
# typing decorator and read the config classes' fields from it.
if sys.version_info >= (3, 11):
  from typing import dataclass_transform
else:  # Python 3.10: the decorator only informs type checkers

  def dataclass_transform(**_):
    return lambda f: f


if TYPE_CHECKING:
  from typing import Self

_T = TypeVar("_T", bound="JsonConfig")

# The type of a `(low, high)` range field.
Range = tuple[float, float]
# The type of a `(label, low, high)` rows field (`label_ranges`).
LabelRanges = tuple[tuple[int, float, float], ...]

Check = Callable[[str, Any], Any]


def field(default: Any = dataclasses.MISSING, check: Check | None = None) -> Any:
  """A dataclass field whose value is converted and validated by `check(name, value)`.

  Declare it with keywords, `field(default=..., check=...)`: type checkers read a field's
  default only from the `default=` keyword (PEP 681), and a field without one is required.

  Args:
    default: the value when the field is not given; leave it out for a required field.
    check: converts and validates the value; raises `ValueError` naming the field.

  Returns:
    A `dataclasses.field` carrying `check` in its metadata.
  """
  if check is None:
    raise TypeError("field() needs a check, e.g. field(default=0.0, check=real())")
  return dataclasses.field(default=default, metadata={"check": check})


def run_checks(obj) -> None:
  """Converts every declared field of the dataclass `obj` in place (frozen or not)."""
  cls = type(obj).__name__
  for f in dataclasses.fields(obj):
    check = f.metadata.get("check")
    if check is not None:
      object.__setattr__(obj, f.name, check(f"{cls}.{f.name}", getattr(obj, f.name)))


@dataclass_transform(frozen_default=True, field_specifiers=(field, dataclasses.field))
def config_class(cls):
  """A frozen dataclass whose declared fields are checked on construction (and replace)."""
  together = getattr(cls, "_check_together", None)

  def __post_init__(self):
    run_checks(self)
    if together is not None:
      together(self)

  cls.__post_init__ = __post_init__
  return dataclasses.dataclass(frozen=True)(cls)


# ---------------------------------------------------------------------------------------
# Scalars


def _bound_text(low, high, low_open, high_open) -> str:
  if low is not None and high is not None:
    return f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
  if low is not None:
    if low == 0:
      return "be positive" if low_open else "be non-negative"
    return f"be {'>' if low_open else '>='} {low:g}"
  return f"be {'<' if high_open else '<='} {high:g}"


def _in_bounds(v, low, high, low_open, high_open) -> bool:
  if low is not None and (v <= low if low_open else v < low):
    return False
  return high is None or (v < high if high_open else v <= high)


def to_float(name: str, value: Any) -> float:
  """A finite number (not a bool, not a string) as a Python float."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.ndarray)):
    raise ValueError(f"{name} must be a number, got {value!r}")
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a number, got {value!r}") from None
  if not math.isfinite(v):
    raise ValueError(f"{name} must be a finite number, got {value!r}")
  return v


def to_int(name: str, value: Any) -> int:
  """An integer (an integral float such as JSON's `32.0` included) as a Python int."""
  if isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be an integer, got {value!r}")
  if isinstance(value, (numbers.Integral, np.integer)):
    return int(value)
  v = to_float(name, value) if isinstance(value, (numbers.Real, np.ndarray)) else None
  if v is None or v != int(v):
    raise ValueError(f"{name} must be an integer, got {value!r}")
  return int(v)


def real(
  *,
  low: float | None = None,
  high: float | None = None,
  low_open: bool = False,
  high_open: bool = False,
) -> Check:
  """A finite number within the given bounds."""

  def check(name, value):
    v = to_float(name, value)
    if not _in_bounds(v, low, high, low_open, high_open):
      raise ValueError(f"{name} must {_bound_text(low, high, low_open, high_open)}, got {value!r}")
    return v

  return check


def positive() -> Check:
  return real(low=0.0, low_open=True)


def prob() -> Check:
  """A probability in [0, 1]."""

  def check(name, value):
    v = to_float(name, value)
    if not 0.0 <= v <= 1.0:
      raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return v

  return check


def integer(*, low: int | None = None, high: int | None = None) -> Check:
  """An integer within the given (inclusive) bounds."""

  def check(name, value):
    v = to_int(name, value)
    if not _in_bounds(v, low, high, False, False):
      bounds = " and ".join(
        t for t in (low is not None and f">= {low}", high is not None and f"<= {high}") if t
      )
      raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return v

  return check


def flag() -> Check:
  """A real bool (`True`/`False`, numpy's included); `"no"`, `0` and `1` are refused."""

  def check(name, value):
    if not isinstance(value, (bool, np.bool_)):
      raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)

  return check


def choice(options: tuple) -> Check:
  """One of `options`."""

  def check(name, value):
    if not isinstance(value, str) or value not in options:
      raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return str(value)

  return check


def optional(inner: Check) -> Check:
  """`None`, or what `inner` accepts."""

  def check(name, value):
    return None if value is None else inner(name, value)

  return check


# ---------------------------------------------------------------------------------------
# Pairs and tuples


def _pair(name: str, value: Any, what: str) -> tuple:
  if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
    raise ValueError(f"{name} must be a (low, high) pair of {what}, got {value!r}")
  items = tuple(value)
  if len(items) != 2:
    raise ValueError(f"{name} must be a (low, high) pair of {what}, got {value!r}")
  return items


def real_range(
  *,
  low: float | None = None,
  high: float | None = None,
  low_open: bool = False,
  high_open: bool = False,
) -> Check:
  """A `(low, high)` pair of finite numbers, `low <= high`, both within the bounds."""

  def check(name, value):
    items = _pair(name, value, "numbers")
    try:
      lo, hi = (to_float(name, v) for v in items)
    except ValueError:
      raise ValueError(
        f"{name} must be a (low, high) pair of finite numbers, got {value!r}"
      ) from None
    if lo > hi:
      raise ValueError(f"{name} must be a range with low <= high, got {(lo, hi)}")
    for v in (lo, hi):
      if not _in_bounds(v, low, high, low_open, high_open):
        raise ValueError(
          f"{name} must {_bound_text(low, high, low_open, high_open)}, got {(lo, hi)}"
        )
    return (lo, hi)

  return check


def int_range(
  *, low: int, high: int | None = None, high_at_least: int | None = None, what: str = ""
) -> Check:
  """A `(low, high)` pair of integers with `low <= first <= second <= high`.

  `high_at_least` asks the second value (the static size it fixes) to allow at least that
  many (`what` names them in the message).
  """

  def check(name, value):
    items = _pair(name, value, "integers")
    try:
      lo, hi = (to_int(name, v) for v in items)
    except ValueError:
      raise ValueError(f"{name} must be a (low, high) pair of integers, got {value!r}") from None
    if lo < low or lo > hi:
      raise ValueError(f"{name} must be integers with {low} <= low <= high, got {(lo, hi)}")
    if high is not None and hi > high:
      raise ValueError(f"{name} allows at most {high}, got {(lo, hi)}")
    if high_at_least is not None and hi < high_at_least:
      raise ValueError(f"{name} must allow at least {high_at_least} {what}, got {(lo, hi)}")
    return (lo, hi)

  return check


def _as_tuple(value) -> tuple:
  if isinstance(value, (str, bytes, dict)):
    raise TypeError
  if isinstance(value, np.ndarray):
    return tuple(value.reshape(-1).tolist())
  return tuple(value) if hasattr(value, "__iter__") else (value,)


def axes() -> Check:
  """Distinct array axes among 0, 1, 2 (one axis may be given alone)."""

  def check(name, value):
    try:
      out = tuple(to_int(name, a) for a in _as_tuple(value))
    except (TypeError, ValueError):
      out = ()
    if not out or any(a not in (0, 1, 2) for a in out) or len(set(out)) != len(out):
      raise ValueError(f"{name} must be distinct axes among 0, 1, 2, got {value!r}")
    return out

  return check


def integers(
  *, low: int | None = None, high: int | None = None, distinct: bool = False, nonempty: bool = False
) -> Check:
  """A tuple of integers (one may be given alone), each within `[low, high]`."""

  def check(name, value):
    try:
      out = tuple(to_int(name, v) for v in _as_tuple(value))
    except (TypeError, ValueError):
      raise ValueError(f"{name} must be integers, got {value!r}") from None
    if nonempty and not out:
      raise ValueError(f"{name} is empty")
    if low is not None and any(v < low for v in out):
      raise ValueError(f"{name} must be integers >= {low}, got {value!r}")
    if high is not None and any(v > high for v in out):
      raise ValueError(f"{name} must be integers <= {high}, got {value!r}")
    if distinct and len(set(out)) != len(out):
      dups = sorted({v for v in out if out.count(v) > 1})
      raise ValueError(f"{name} has duplicates: {dups}")
    return out

  return check


def sizes(n: int, *, low: int) -> Check:
  """Exactly `n` integers, each `>= low` (a shape)."""

  def check(name, value):
    try:
      out = tuple(to_int(name, v) for v in _as_tuple(value))
    except (TypeError, ValueError):
      out = ()
    if len(out) != n or min(out) < low:
      raise ValueError(f"{name} must be {n} integers >= {low}, got {value!r}")
    return out

  return check


def positives(n: int) -> Check:
  """Exactly `n` finite positive numbers (a spacing)."""

  def check(name, value):
    try:
      out = tuple(to_float(name, v) for v in _as_tuple(value))
    except (TypeError, ValueError):
      out = ()
    if len(out) != n or min(out) <= 0:
      raise ValueError(f"{name} must be {n} finite positive numbers, got {value!r}")
    return out

  return check


def label_groups() -> Check:
  """Non-empty groups of label values, each value in at most one group."""

  def check(name, value):
    try:
      groups = tuple(tuple(to_int(name, v) for v in _as_tuple(g)) for g in _as_tuple(value))
    except (TypeError, ValueError):
      raise ValueError(f"{name} must be groups of label values, got {value!r}") from None
    flat = [v for g in groups for v in g]
    if any(not g for g in groups) or len(flat) != len(set(flat)):
      raise ValueError(
        f"{name} must be non-empty groups naming each label at most once, got {groups}"
      )
    return groups

  return check


def label_ranges(*, low: float | None = None) -> Check:
  """`(label, low, high)` triples: distinct integer labels, each with a range of finite
  numbers `low <= high` (each `>= low` when given)."""

  def check(name, value):
    try:
      rows = tuple(tuple(_as_tuple(r)) for r in _as_tuple(value))
    except TypeError:
      raise ValueError(f"{name} must be (label, low, high) triples, got {value!r}") from None
    out = []
    for r in rows:
      if len(r) != 3:
        raise ValueError(f"{name} must be (label, low, high) triples, got {r!r}")
      label = to_int(name, r[0])
      lo, hi = real_range(low=low)(f"{name}[label {label}]", r[1:])
      out.append((label, lo, hi))
    labels = [r[0] for r in out]
    if len(set(labels)) != len(labels):
      raise ValueError(
        f"{name} names a label more than once: {sorted({v for v in labels if labels.count(v) > 1})}"
      )
    return tuple(out)

  return check


def from_mapping(cls: type[_T], d: Any) -> _T:
  """`cls(**d)` for a config dataclass, refusing a non-dict and unknown or missing fields
  with a message naming them."""
  name = cls.__name__
  if not isinstance(d, dict):
    raise ValueError(f"{name} must be given as a dict of its fields, got {type(d).__name__}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(d) - set(fields))
  if unknown:
    raise ValueError(f"{name} has no field(s) {unknown}; its fields are {sorted(fields)}")
  missing = sorted(
    n
    for n, f in fields.items()
    if n not in d and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
  )
  if missing:
    raise ValueError(f"{name} is missing the field(s) {missing}")
  return cls(**d)


class JsonConfig:
  """JSON round trip for a config dataclass: `to_dict` / `to_json`, and `from_dict` /
  `from_json`, which refuse unknown and missing fields (`from_mapping`)."""

  # Set on each subclass by `config_class`; declared so that type checkers see a dataclass.
  __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

  def to_dict(self) -> dict[str, Any]:
    """The fields as a dict, nested configs as dicts (`dataclasses.asdict`)."""
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    """`to_dict` as JSON, keys sorted (so that equal configs give equal text)."""
    return json.dumps(self.to_dict(), sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Self:
    """A config from `to_dict`'s output (nested configs as dicts, lists for tuples)."""
    return from_mapping(cls, d)

  @classmethod
  def from_json(cls, text: str) -> Self:
    """A config from `to_json`'s output (see `from_dict`)."""
    return cls.from_dict(json.loads(text))
