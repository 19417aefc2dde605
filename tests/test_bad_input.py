"""Bad input and faults, as a user meets them: each case checks the message, the exit status,
and that nothing is lost or left half written.

Covers: the output folder (overwrite owns only its run's files, interrupted overwrites,
foreign files, two runs at once, stale temporaries, file modes), signals (SIGTERM), label
maps whose values do not fit, and configs with nonsense values.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from synthjax._src import runs
from tests.test_cli import cli

SMALL = ["--demo", "--demo-shape", "16", "16", "16", "--demo-spacing", "12", "--quiet"]


def generate(out, *extra, n=2, seed=0, check=True):
  return cli(
    "generate", *SMALL, "-n", str(n), "-o", str(out), "--seed", str(seed), *extra, check=check
  )


def files(folder):
  return sorted(os.listdir(folder))


def assert_no_partial(folder):
  """Every sample with a params JSON has readable volumes; no temporary remains."""
  names = files(folder)
  assert not [n for n in names if n.startswith(".tmp-")], names
  for n in names:
    if n.endswith("_params.json"):
      stem = os.path.join(folder, n[: -len("_params.json")])
      nib.load(stem + "_image.nii.gz").get_fdata()
      nib.load(stem + "_seg.nii.gz").get_fdata()


# ---------------------------------------------------------------------------------------
# The output folder


def test_overwrite_removes_only_the_replaced_runs_files(tmp_path):
  out = tmp_path / "run"
  generate(out, n=3, seed=0)
  (out / "sample_notes.txt").write_text("mine")
  (out / "sample_qc").mkdir()
  (out / "sample_qc" / "a.txt").write_text("mine too")
  (out / "sample_00099_image.nii.gz").write_text("not written by the run (index >= n)")
  (out / "sample_00000_image.nii.gz.bak").write_text("a user's backup")
  res = generate(out, "--overwrite", n=1, seed=1)
  assert "kept 4 entries that the replaced run did not write" in res.stderr
  assert (out / "sample_notes.txt").read_text() == "mine"
  assert (out / "sample_qc" / "a.txt").read_text() == "mine too"
  assert (out / "sample_00099_image.nii.gz").exists()
  assert (out / "sample_00000_image.nii.gz.bak").exists()
  # The old run's samples 1 and 2 are gone; sample 0 is the new run's.
  assert not (out / "sample_00001_params.json").exists()
  assert not (out / "sample_00002_image.nii.gz").exists()
  side = json.loads((out / "sample_00000_params.json").read_text())
  assert side["seed"] == 1
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["seed"] == 1 and "replacing" not in manifest
  assert_no_partial(out)


def test_a_shorter_resume_keeps_ownership_of_the_longer_runs_files(tmp_path):
  out = tmp_path / "run"
  generate(out, n=3, seed=0)
  generate(out, n=1, seed=0)  # the same run, asked for fewer samples
  assert json.loads((out / "manifest.json").read_text())["n"] == 3
  generate(out, "--overwrite", n=1, seed=5)
  assert not (out / "sample_00002_params.json").exists()
  assert not (out / "sample_00002_image.nii.gz").exists()


def test_interrupted_overwrite_finishes_before_new_samples(tmp_path):
  out = tmp_path / "run"
  generate(out, n=3, seed=0)
  old = json.loads((out / "manifest.json").read_text())
  # The state an overwrite leaves when killed halfway through its removal: the new
  # manifest recording what it replaces, and some of the old run's files still there.
  new = dict(old, seed=1, replacing=[old])
  (out / "manifest.json").write_text(json.dumps(new))
  os.remove(out / "sample_00000_params.json")
  res = generate(out, n=2, seed=1)  # the same command again, without --overwrite
  assert res.returncode == 0
  names = files(out)
  assert "sample_00002_image.nii.gz" not in names and "sample_00002_params.json" not in names
  for i in (0, 1):
    assert json.loads((out / f"sample_{i:05d}_params.json").read_text())["seed"] == 1
  assert "replacing" not in json.loads((out / "manifest.json").read_text())


def test_another_run_without_overwrite_is_refused_and_nothing_changes(tmp_path):
  out = tmp_path / "run"
  generate(out, n=1, seed=0)
  before = {n: os.stat(out / n).st_mtime_ns for n in files(out)}
  res = generate(out, n=1, seed=7, check=False)
  assert res.returncode == 2
  assert "holds a run of another command (seed differ); pass --overwrite" in res.stderr
  assert {n: os.stat(out / n).st_mtime_ns for n in files(out)} == before


def test_folder_of_other_files_is_refused_and_not_touched(tmp_path):
  out = tmp_path / "mine"
  out.mkdir()
  (out / "sample_notes.txt").write_text("x")
  for extra in ((), ("--overwrite",)):
    res = generate(out, *extra, check=False)
    assert res.returncode == 2 and "holds no synthjax run" in res.stderr
    assert files(out) == ["sample_notes.txt"]


def test_output_path_that_is_a_file_is_refused(tmp_path):
  (tmp_path / "f").write_text("x")
  res = generate(tmp_path / "f", check=False)
  assert res.returncode == 2 and "exists and is not a folder" in res.stderr
  assert (tmp_path / "f").read_text() == "x"


def test_unreadable_manifest_is_named(tmp_path):
  out = tmp_path / "run"
  out.mkdir()
  (out / "manifest.json").write_text("{not json")
  res = generate(out, check=False)
  assert res.returncode == 2 and "manifest.json: unreadable manifest" in res.stderr
  (out / "manifest.json").write_text("[1, 2]")
  res = generate(out, check=False)
  assert res.returncode == 2 and "not an object" in res.stderr


def test_manifest_of_an_unknown_command_is_not_overwritten_blindly(tmp_path):
  out = tmp_path / "run"
  out.mkdir()
  (out / "manifest.json").write_text(json.dumps({"format": "x", "command": "future"}))
  (out / "sample_00000_image.nii.gz").write_text("?")
  res = generate(out, "--overwrite", check=False)
  assert res.returncode == 2 and "unknown command 'future'" in res.stderr
  assert (out / "sample_00000_image.nii.gz").read_text() == "?"


def test_second_run_into_a_held_folder_is_refused(tmp_path):
  out = tmp_path / "run"
  generate(out, n=1)
  lock = runs.lock_folder(str(out))  # as another process writing there holds it
  try:
    res = generate(out, n=2, check=False)
    assert res.returncode == 2
    assert "another synthjax run is writing there" in res.stderr
    assert f"pid {os.getpid()}" in res.stderr
    assert not (out / "sample_00001_params.json").exists()
  finally:
    lock.close()
  generate(out, n=2)  # released: the run resumes
  assert (out / "sample_00001_params.json").exists()


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path):
  out = tmp_path / "run"
  generate(out, n=1)
  (out / ".tmp-abc123.nii.gz").write_bytes(b"half a file")
  (out / ".tmp-xyz").write_text("{")
  generate(out, n=2)
  assert not [n for n in files(out) if n.startswith(".tmp-")]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_mode_open_would_give(tmp_path, umask):
  from synthjax._src import nifti

  old = os.umask(umask)
  nifti._umask_value = None  # read again (it is read once per process)
  try:
    out = tmp_path / "run"
    generate(out, n=1)
    plain = tmp_path / "plain"
    plain.write_text("x")
    want = stat.S_IMODE(os.stat(plain).st_mode)
    assert want == 0o666 & ~umask
    for name in (
      "manifest.json",
      "sample_00000_image.nii.gz",
      "sample_00000_seg.nii.gz",
      "sample_00000_params.json",
    ):
      assert stat.S_IMODE(os.stat(out / name).st_mode) == want, name
  finally:
    os.umask(old)
    nifti._umask_value = None


def test_arrayrecord_overwrite_keeps_foreign_files(tmp_path):
  out = tmp_path / "run"
  generate(out, "--format", "arrayrecord", n=2)
  (out / "samples.notes").write_text("mine")
  generate(out, "--format", "arrayrecord", "--overwrite", n=1, seed=3)
  assert (out / "samples.notes").read_text() == "mine"
  from synthjax import data

  records = data.read_arrayrecord(str(out / "samples"))
  assert len(records) == 1 and records[0]["sidecar"]["seed"] == 3


# ---------------------------------------------------------------------------------------
# Signals


def test_the_recipes_own_entry_point_reports_a_stop_swallowed_by_a_finalizer(capsys):
  """`synthjax.train.train_main` and `segment_main` (not through `synthjax`) stop as the
  command line does: a SIGTERM that lands where Python swallows it ends the run with 143."""
  import argparse

  from synthjax._src.train import cli as recipe

  class SignalledWhileFinalized:
    def __del__(self):
      os.kill(os.getpid(), signal.SIGTERM)

  def run(args, parser):
    SignalledWhileFinalized()  # the handler's exception is swallowed inside __del__

  status = recipe.main("synthjax train", argparse.ArgumentParser(), run, [])
  assert status == 143
  assert "synthjax train: terminated (SIGTERM); checkpoints are kept" in capsys.readouterr().err
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_is_a_clean_stop_and_the_run_resumes(tmp_path):
  out = tmp_path / "run"
  args = [
    sys.executable,
    "-m",
    "synthjax.cli",
    "generate",
    *SMALL,
    "-n",
    "200",
    "-o",
    str(out),
    "--seed",
    "4",
    "--workers",
    "1",
  ]
  proc = subprocess.Popen(
    args,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  deadline = time.time() + 120
  while time.time() < deadline and not (out / "sample_00001_params.json").exists():
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)  # how SLURM, Docker and Kubernetes stop a job
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err
  assert "terminated (SIGTERM)" in err and "Traceback" not in err
  assert_no_partial(out)
  done = len([n for n in files(out) if n.endswith("_params.json")])
  assert 2 <= done < 200
  res = generate(out, n=done + 2, seed=4)
  assert "wrote 2 samples" in res.stdout


# ---------------------------------------------------------------------------------------
# Label maps and configs


def _save(path, data):
  nib.save(nib.Nifti1Image(data, np.eye(4), dtype=data.dtype), str(path))
  return str(path)


@pytest.mark.parametrize(
  "dtype,value",
  [(np.int64, 2**32 + 1), (np.uint32, 2**31), (np.float64, 3e9), (np.int64, -(2**31) - 1)],
)
def test_label_values_beyond_int32_are_refused_not_wrapped(tmp_path, dtype, value):
  from synthjax._src import nifti

  data = np.zeros((8, 8, 8), dtype)
  data[2:4, 2:4, 2:4] = 1
  data[5, 5, 5] = value
  path = _save(tmp_path / "big.nii.gz", data)
  with pytest.raises(ValueError, match=r"big\.nii\.gz: label value\(s\) outside the int32 range"):
    nifti.load_label_map(path)
  res = cli("generate", path, "-n", "1", "-o", str(tmp_path / "out"), "--quiet", check=False)
  assert res.returncode == 2 and "int32 range" in res.stderr
  assert not (tmp_path / "out").exists()


def test_label_values_at_the_int32_limits_load_exactly(tmp_path):
  from synthjax._src import nifti

  data = np.zeros((4, 4, 4), np.int64)
  data[0, 0, 0], data[1, 1, 1] = 2**31 - 1, -(2**31)
  labels, _, _ = nifti.load_label_map(_save(tmp_path / "edge.nii.gz", data))
  assert labels[0, 0, 0] == 2**31 - 1 and labels[1, 1, 1] == -(2**31)


# ---------------------------------------------------------------------------------------
# Params: tampered files and `fixed`


@pytest.fixture(scope="module")
def every_stage():
  """A config with every stage enabled, one sample's params as JSON-ready dicts, and its
  template."""
  import jax

  import synthjax
  from synthjax._src import sampling, serialize
  from synthjax._src.config import _STAGE_TYPES

  base = synthjax.presets.fetal(tuple(range(8)), (16, 16, 16))
  cfg = base.replace(
    **{
      s: {"enabled": True, "prob": 0.5}
      for s in _STAGE_TYPES
      if not getattr(base, s).enabled and s != "image_intensity"
    }
  )
  # A rule, so that the stage's per-rule entries have values to tamper with.
  cfg = cfg.replace(grow_labels={"rules": (((4,), (3,), (0.0, 2.0), 0.5),)})
  params = synthjax.sample_params(jax.random.key(3), cfg)
  return cfg, serialize.params_to_dict(params), sampling.params_template(cfg)


def _outside(bounds, high):
  """A value outside `bounds` (below its low end, or above its high end)."""
  if bounds.low is not None:
    return bounds.low if bounds.low_open else bounds.low - 1
  return high + 1


def _domain_cases():
  from synthjax._src import registry

  return [(s.name, name) for s in registry.STAGES for name in s.domain]


@pytest.mark.parametrize("stage,entry", _domain_cases())
def test_params_json_outside_a_stage_domain_is_refused(every_stage, stage, entry):
  import copy

  import synthjax
  from synthjax._src import registry

  cfg, data, template = every_stage
  bounds = registry.BY_NAME[stage].domain[entry]
  high = bounds.high
  if bounds.at_most_rows:
    high = template[stage][bounds.at_most_rows].shape[0]
  bad = copy.deepcopy(data)
  value = np.array(bad[stage][entry])
  value.reshape(-1)[0] = _outside(bounds, high)
  bad[stage][entry] = value.tolist()
  message = rf"params JSON {stage}\.{entry}(\[0\])* = .* is outside its domain"
  with pytest.raises(ValueError, match=message):
    synthjax.params_from_json(bad, cfg)
  synthjax.params_from_json(data, cfg)  # the untouched file loads


@pytest.mark.parametrize("entry", ["rotation", "scaling", "shear", "translation"])
def test_params_json_nan_is_refused(every_stage, entry):
  import copy

  import synthjax

  cfg, data, _ = every_stage
  bad = copy.deepcopy(data)
  bad["affine"][entry][1] = float("nan")
  with pytest.raises(ValueError, match=rf"affine\.{entry}\[1\] must be finite, got nan"):
    synthjax.params_from_json(bad, cfg)


@pytest.mark.parametrize(
  "text,message",
  [
    ("null", "must be an object of stages"),
    ("[1, 2]", "must be an object of stages"),
    ('{"affine": 3}', "must be an object of stages"),
    ("{not json", "not valid JSON"),
  ],
)
def test_params_json_that_is_not_params_is_refused(every_stage, text, message):
  import synthjax

  cfg, _, _ = every_stage
  with pytest.raises(ValueError, match=message):
    synthjax.params_from_json(text, cfg)


@pytest.mark.parametrize(
  "stage,entry,value,message",
  [
    ("affine", "rotation", [0.0, "a", 0.0], r"affine\.rotation must hold numbers"),
    ("flip", "applied", 1, r"flip\.applied must hold true/false"),
    ("gmm", "means", [True] * 8, r"gmm\.means must hold numbers"),
    ("ghosting", "num_ghosts", 2.5, r"ghosting\.num_ghosts must hold integers"),
    ("motion", "num_transforms", 2**40, r"num_transforms has values outside int32"),
  ],
)
def test_params_json_with_wrong_kinds_of_values_is_refused(
  every_stage, stage, entry, value, message
):
  import copy

  import synthjax

  cfg, data, _ = every_stage
  bad = copy.deepcopy(data)
  bad[stage][entry] = value
  with pytest.raises(ValueError, match=message):
    synthjax.params_from_json(bad, cfg)


def test_params_json_applied_for_a_disabled_stage_is_refused(every_stage):
  import copy

  import synthjax

  cfg, data, _ = every_stage
  off = cfg.replace(spike={"enabled": False})
  bad = copy.deepcopy(data)
  bad["spike"]["applied"] = True
  with pytest.raises(
    ValueError, match="params JSON spike.applied is true but the spike stage is disabled"
  ):
    synthjax.params_from_json(bad, off)
  bad["spike"]["applied"] = False
  bad["spike"]["intensity"] = float("nan")  # not rendered: only its flag matters
  synthjax.params_from_json(bad, off)


@pytest.mark.parametrize(
  "fixed,message",
  [
    (
      {"affine": {"rotation": [0.0, float("nan"), 0.0]}},
      r"fixed affine\.rotation\[1\] must be finite",
    ),
    (
      {"affine": {"scaling": [-1.0, 1.0, 1.0]}},
      r"fixed affine\.scaling\[0\] = -1\.0 is outside its domain \(0, inf\]",
    ),
    ({"gibbs": {"alpha": 2.0}}, r"fixed gibbs\.alpha = 2\.0 is outside its domain \[0, 1\]"),
    ({"crop": {"position": [0.5, 1.5, 0.5]}}, r"fixed crop\.position\[1\]"),
  ],
)
def test_fixed_outside_the_domain_is_refused(every_stage, fixed, message):
  import jax

  import synthjax

  cfg, _, _ = every_stage
  with pytest.raises(ValueError, match=message):
    synthjax.sample_params(jax.random.key(0), cfg, fixed=fixed)


def test_config_rotation_beyond_half_a_turn_is_refused():
  import synthjax

  with pytest.raises(ValueError, match=r"AffineConfig\.rotation must lie in \[-180, 180\]"):
    synthjax.AffineConfig(rotation=(-1000, 1000))


# ---------------------------------------------------------------------------------------
# Replay and seeds


@pytest.fixture
def one_sample(tmp_path):
  labels = np.zeros((12, 12, 12), np.int16)
  labels[3:9, 3:9, 3:9] = 1
  labels[5:7, 5:7, 5:7] = 2
  path = _save(tmp_path / "map.nii.gz", labels)
  out = tmp_path / "run"
  cli("generate", path, "-n", "1", "-o", str(out), "--quiet")
  return path, out / "sample_00000_params.json"


def _replay(sidecar, out, *extra):
  return cli("replay", str(sidecar), "-o", str(out), *extra, check=False)


def test_replay_refuses_a_changed_label_map_unless_forced(one_sample, tmp_path):
  path, sidecar = one_sample
  side = json.loads(sidecar.read_text())
  assert len(side["source"]["labels_sha256"]) == 64
  img = nib.load(path)
  data = np.asanyarray(img.dataobj).copy()
  data[0, 0, 0] = 2  # one voxel edited
  nib.save(nib.Nifti1Image(data, img.affine), path)
  res = _replay(sidecar, tmp_path / "r1")
  assert res.returncode == 2
  assert f"{path} changed since {sidecar} was written" in res.stderr and "--force" in res.stderr
  assert not (tmp_path / "r1").exists()
  res = _replay(sidecar, tmp_path / "r2", "--force")
  assert res.returncode == 0 and "replaying anyway (--force)" in res.stderr
  assert (tmp_path / "r2" / "sample_00000_image.nii.gz").exists()


def test_replay_of_a_recompressed_but_equal_map_is_bitwise(one_sample, tmp_path):
  path, sidecar = one_sample
  img = nib.load(path)
  data = np.asanyarray(img.dataobj).astype(np.int32)  # another dtype on disk, same labels
  nib.save(nib.Nifti1Image(data, img.affine, dtype=np.int32), path)
  res = _replay(sidecar, tmp_path / "r")
  assert res.returncode == 0, res.stderr
  a = nib.load(sidecar.parent / "sample_00000_image.nii.gz").get_fdata()
  b = nib.load(tmp_path / "r" / "sample_00000_image.nii.gz").get_fdata()
  assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
  "edit,message",
  [
    (lambda s: s.pop("key"), r"sample file lacks \['key'\]"),
    (lambda s: s.pop("config"), r"sample file lacks \['config'\]"),
    (
      lambda s: s["params"]["affine"].update(rotation=[0, 1000, 0]),
      r"affine\.rotation\[1\] = 1000",
    ),
    (lambda s: s["config"]["gamma"].update(std=-1), r"GammaConfig\.std must be non-negative"),
    (
      lambda s: s["config"]["spike"].update(enabled="no"),
      r"SpikeConfig\.enabled must be true or false",
    ),
    (lambda s: s.update(source={"nothing": 1}), "source must name a label map"),
    (lambda s: s.update(format="other/1"), "not a synthjax sample file"),
  ],
)
def test_replay_of_a_tampered_sidecar_is_refused_naming_the_file(
  one_sample, tmp_path, edit, message
):
  _, sidecar = one_sample
  side = json.loads(sidecar.read_text())
  edit(side)
  bad = tmp_path / "bad_params.json"
  bad.write_text(json.dumps(side))
  res = _replay(bad, tmp_path / "r")
  assert res.returncode == 2, res.stderr
  assert str(bad) in res.stderr and "Traceback" not in res.stderr
  assert len(res.stderr.strip().splitlines()) == 1
  import re

  assert re.search(message, res.stderr), res.stderr
  assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("seed", [2**32, 2**70, -1])
def test_seeds_that_would_alias_are_refused_before_anything_is_written(tmp_path, seed):
  res = generate(tmp_path / "run", seed=seed, check=False)
  assert res.returncode == 2 and "--seed must be in [0, 2**32)" in res.stderr
  assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------
# Memory


@pytest.mark.parametrize(
  "preset,every_stage_on,channels", [("fetal", True, 1), ("synthseg", False, 3)]
)
def test_memory_estimate_bounds_what_xla_allocates(preset, every_stage_on, channels):
  import jax

  import synthjax
  from synthjax._src import memory, rendering
  from synthjax._src.config import _STAGE_TYPES

  n = 32
  cfg = getattr(synthjax.presets, preset)(tuple(range(8)), (n, n, n)).replace(num_channels=channels)
  if every_stage_on:
    cfg = cfg.replace(
      **{
        s: {"enabled": True, "prob": 0.5}
        for s in _STAGE_TYPES
        if not getattr(cfg, s).enabled and s != "image_intensity"
      }
    )
  labels = np.zeros((n, n, n), np.int32)
  labels[8:24, 8:24, 8:24] = 3
  # Lowering needs only the params' shapes: no sampler is compiled.
  params = jax.eval_shape(lambda k: synthjax.sample_params(k, cfg), jax.random.key(0))
  stats = (
    rendering._synthesize_jit.lower(jax.random.key(1), params, labels, cfg)
    .compile()
    .memory_analysis()
  )
  used = stats.temp_size_in_bytes + stats.output_size_in_bytes + stats.argument_size_in_bytes
  estimate = memory.estimate_bytes(cfg, labels.shape)
  assert used <= estimate < 3 * used, (used, estimate)


def test_memory_check_refuses_what_does_not_fit():
  import synthjax
  from synthjax._src import memory

  cfg = synthjax.presets.synthseg((0, 1), (256, 256, 256))
  need = memory.estimate_bytes(cfg)
  assert need == 256**3 * 84
  memory.check_fits(cfg, available=need)
  with pytest.raises(
    ValueError,
    match=r"shape \(256, 256, 256\) needs about 1\.3 GiB .* but "
    r"1\.0 GiB is available; use a smaller shape",
  ):
    memory.check_fits(cfg, available=2**30)
  assert memory.estimate_bytes(cfg, (300, 300, 300), batch=2) == 2 * (80 * 256**3 + 4 * 300**3)


def test_cli_refuses_a_shape_beyond_memory_before_creating_anything(tmp_path):
  res = generate(tmp_path / "run", "--shape", "1600", "1600", "1600", check=False)
  assert res.returncode == 2
  assert "needs about" in res.stderr and "use a smaller shape" in res.stderr
  assert "Traceback" not in res.stderr
  assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------
# Useless or broken input


def test_single_label_map_and_missing_label_zero_are_named(tmp_path):
  ones = np.ones((12, 12, 12), np.int16)
  path = _save(tmp_path / "flat.nii.gz", ones)
  res = cli("generate", path, "-n", "1", "-o", str(tmp_path / "a"), "--quiet", check=False)
  assert res.returncode == 0, res.stderr
  assert "flat.nii.gz: holds a single label value (1)" in res.stderr
  assert "flat.nii.gz: has no label 0, so label 1 is taken as the background" in res.stderr
  two = ones.copy()
  two[4:8, 4:8, 4:8] = 0
  path = _save(tmp_path / "ok.nii.gz", two)
  res = cli("generate", path, "-n", "1", "-o", str(tmp_path / "b"), "--quiet")
  assert "warning" not in res.stderr


def test_unknown_label_values_are_refused_by_every_command(tmp_path):
  import synthjax

  labels = np.zeros((12, 12, 12), np.int16)
  labels[4:8, 4:8, 4:8] = 7
  path = _save(tmp_path / "map.nii.gz", labels)
  cfg = synthjax.presets.synthseg((0, 1), (12, 12, 12))
  (tmp_path / "cfg.json").write_text(cfg.to_json())
  for cmd, out in (("generate", "g"), ("views", "v"), ("preview", "p.png")):
    res = cli(
      cmd, path, "--config", str(tmp_path / "cfg.json"), "-o", str(tmp_path / out), check=False
    )
    assert res.returncode == 2, (cmd, res.stderr)
    assert "map.nii.gz: label value(s) not in config.label_values: 7 (64 voxels)" in res.stderr
    assert not (tmp_path / out).exists()


def test_assemble_refuses_patches_that_cover_nothing():
  from synthjax.data import assemble

  patches = np.ones((2, 4, 4, 4), np.float32)
  with pytest.raises(
    ValueError,
    match=r"no patch covers any voxel of the volume of shape "
    r"\(8, 8, 8\)",
  ):
    assemble(patches, np.array([[8, 0, 0], [0, 9, 0]]), (8, 8, 8))
  out = assemble(patches, np.array([[8, 0, 0], [4, 4, 4]]), (8, 8, 8))  # one covers
  assert out[4:, 4:, 4:].min() == 1 and out[:4].max() == 0


def test_a_label_map_broken_after_the_source_was_built_gives_a_value_error(tmp_path):
  from synthjax import data

  labels = np.zeros((8, 8, 8), np.int16)
  labels[2:6, 2:6, 2:6] = 1
  path = _save(tmp_path / "m.nii", labels)  # uncompressed: read lazily, region by region
  source = data.NiftiSource([path])
  (tmp_path / "m.nii").write_bytes(b"garbage" * 10)
  with pytest.raises(ValueError, match=r"m\.nii: cannot read data"):
    source[0]["labels"][0:4, 0:4, 0:4]


@pytest.fixture
def tiny_disk(tmp_path):
  """A 1 MiB tmpfs (needs the right to mount; skipped otherwise)."""
  mnt = tmp_path / "disk"
  mnt.mkdir()
  res = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
  )
  if res.returncode != 0:
    pytest.skip("cannot mount a tmpfs here")
  yield mnt
  subprocess.run(["umount", "-l", str(mnt)], capture_output=True)  # lazy: never left mounted


def test_disk_full_is_a_clear_error_and_leaves_complete_samples(tiny_disk):
  out = tiny_disk / "run"
  res = cli(
    "generate",
    *SMALL[:-1],
    "--shape",
    "48",
    "48",
    "48",
    "-n",
    "50",
    "-o",
    str(out),
    "--quiet",
    check=False,
  )
  assert res.returncode == 2
  assert "No space left on device" in res.stderr and "Traceback" not in res.stderr
  assert len(res.stderr.strip().splitlines()) == 1
  assert_no_partial(out)
