"""The training recipe driven as a user drives it: train, predict, kill -9 and resume,
two devices, two processes, and a learning test on a tiny problem.

The runs are small (16^3 maps, a 2-level U-Net). Subprocesses share a persistent JAX
compilation cache, so the same train step is compiled once for all of them.
"""

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
from _requires import requires
from conftest import with_fast_compile, without_fast_compile

from synthjax import cli
from synthjax._src.train import plot, segment, train

pytestmark = requires("flax", "optax", "orbax.checkpoint")

# The commands as users run them, in a fresh process.
TRAIN = ["-m", "synthjax.cli", "train"]
SEGMENT = ["-m", "synthjax.cli", "segment"]
STEPS = 20
CKPT_EVERY = 7
# Two checkpoints are kept: the last full multiple of CKPT_EVERY and the final step.
KEPT = [str(STEPS // CKPT_EVERY * CKPT_EVERY), str(STEPS)]


def blob_map(shape, seed, labels=(1, 2)):
  """An ellipsoid (label 1) with a core (label 2) at a random position."""
  rng = np.random.default_rng(seed)
  g = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
  c = np.array(shape) / 2 + rng.uniform(-1.5, 1.5, 3)
  r = rng.uniform(0.3, 0.38) * min(shape)
  d = np.linalg.norm((g - c) / np.array([1.0, 0.9, 0.8]), axis=-1)
  out = np.zeros(shape, np.int16)
  out[d < r] = labels[0]
  out[d < 0.55 * r] = labels[1]
  return out


def write_problem(folder, shape, n_train=3):
  """Label maps for training and a 'real' scan with its labels (fixed contrast + noise)."""
  os.makedirs(folder, exist_ok=True)
  affine = np.diag([2.0, 2.0, 2.0, 1.0])
  paths = []
  for i in range(n_train):
    paths.append(os.path.join(folder, f"train{i}_dseg.nii.gz"))
    nib.save(nib.Nifti1Image(blob_map(shape, i), affine), paths[-1])
  labels = blob_map(shape, 10)
  rng = np.random.default_rng(5)
  image = np.array([0.0, 0.35, 0.8])[labels] + rng.normal(0, 0.03, labels.shape)
  val_image = os.path.join(folder, "val_T1w.nii.gz")
  val_labels = os.path.join(folder, "val_dseg.nii.gz")
  nib.save(nib.Nifti1Image(image.astype(np.float32), affine), val_image)
  nib.save(nib.Nifti1Image(labels, affine), val_labels)
  return paths, val_image, val_labels


@pytest.fixture(scope="module")
def problem(tmp_path_factory, compilation_cache):
  root = tmp_path_factory.mktemp("recipe")
  paths, val_image, val_labels = write_problem(str(root / "data"), (16, 16, 16))
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=compilation_cache, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = with_fast_compile()
  # The runs test the recipe (checkpoints, resume, devices, processes), not the generator's
  # stages: without the deformation, bias and resolution stages, the train step compiles
  # in about 60 % of the time. The learning test below renders a fuller config.
  import synthjax

  light = synthjax.presets.synthseg(
    (0, 1, 2),
    (16, 16, 16),
    (2.0, 2.0, 2.0),
    **{s: {"enabled": False} for s in ("deformation", "bias", "resolution")},
  )
  config = str(root / "light.json")
  with open(config, "w") as f:
    f.write(light.to_json())
  common = paths + [
    "--config",
    config,
    "--features",
    "4",
    "8",
    "--batch",
    "2",
    "--steps",
    str(STEPS),
    "--ckpt-every",
    str(CKPT_EVERY),
    "--seed",
    "3",
    "--quiet",
  ]
  return {
    "root": root,
    "paths": paths,
    "val": f"{val_image}:{val_labels}",
    "val_image": val_image,
    "val_labels": val_labels,
    "env": env,
    "common": common,
  }


def _train(problem, out, *extra, env=None, check=True):
  proc = subprocess.run(
    [sys.executable, *TRAIN, *problem["common"], "-o", out, *extra],
    capture_output=True,
    text=True,
    env=env or problem["env"],
    timeout=300,
  )
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _losses(run_dir):
  return [
    r["loss"] for r in plot.read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r
  ]


def _sha256(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def reference(problem):
  """An uninterrupted run with validation at the end (0 Grain workers), in this process;
  the runs below drive the command line in subprocesses."""
  out = str(problem["root"] / "reference")
  _train_here(problem, out, "--val", problem["val"])
  return out


def test_run_records_metrics_checkpoints_and_curves(problem, reference):
  records = plot.read_metrics(os.path.join(reference, "metrics.jsonl"))
  steps = [r for r in records if "loss" in r]
  assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
  assert all(np.isfinite(r["loss"]) and r["samples_per_s"] > 0 for r in steps)
  # It learns something even in 20 steps of a tiny net.
  assert np.mean([r["loss"] for r in steps[-5:]]) < np.mean([r["loss"] for r in steps[:5]])
  val = [r for r in records if "mean_dice" in r]
  assert [r["step"] for r in val] == [STEPS] and set(val[0]["dice"]) == {"1", "2"}
  assert sorted(os.listdir(os.path.join(reference, "checkpoints"))) == KEPT
  assert os.listdir(os.path.join(reference, "best")) == [str(STEPS)]
  assert os.path.getsize(os.path.join(reference, "curves.png")) > 1000
  with open(os.path.join(reference, "run.json")) as f:
    run = json.load(f)
  assert run["classes"] == [0, 1, 2] and run["model"]["features"] == [4, 8]
  # Provenance: the stack's versions, the source's commit, the label maps' digests.
  assert set(run["versions"]) == {
    "synthjax",
    "jax",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "numpy",
    "nibabel",
    "python",
  }
  assert run["versions"]["numpy"] == np.__version__
  assert run["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
  git = run["git"]
  assert git is None or (len(git["commit"]) == 40 and isinstance(git["dirty"], bool))
  assert run["label_sha256"] == {p: _sha256(p) for p in problem["paths"]}


def test_predict_writes_segmentation_on_the_scans_own_grid(problem, reference, tmp_path, capsys):
  # The scan in another orientation (LPS-like flips and an axis swap) at another spacing.
  img = nib.load(problem["val_image"])
  data = np.asarray(img.dataobj)
  moved = np.transpose(data[::-1, :, ::-1], (1, 0, 2))
  affine = np.array([[0, 1.6, 0, -5], [-1.6, 0, 0, 40], [0, 0, -2.2, 30], [0, 0, 0, 1]])
  scan = str(tmp_path / "moved_T1w.nii.gz")
  nib.save(nib.Nifti1Image(moved, affine), scan)
  out = str(tmp_path / "pred")
  proc = subprocess.run(
    [
      sys.executable,
      *SEGMENT,
      reference,
      scan,
      problem["val_image"],
      "-o",
      out,
      "--tta",
      "--quiet",
    ],
    capture_output=True,
    text=True,
    env=problem["env"],
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name, shape, aff in (("moved_T1w", moved.shape, affine), ("val_T1w", data.shape, img.affine)):
    seg = nib.load(os.path.join(out, f"{name}_seg.nii.gz"))
    conf = nib.load(os.path.join(out, f"{name}_conf.nii.gz"))
    assert seg.shape == shape and conf.shape == shape
    np.testing.assert_allclose(seg.affine, aff, atol=1e-5)
    np.testing.assert_allclose(conf.affine, aff, atol=1e-5)
    values = np.asarray(conf.dataobj)
    assert values.min() >= 0.0 and values.max() <= 1.0 and values.max() > 0.34
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2}
    _check_volumes_and_qc(out, name, seg)
  # The run it used, in one line.
  summary = [l for l in proc.stderr.splitlines() if "trained with synthjax" in l]
  assert len(summary) == 1 and reference in summary[0] and "[0, 1, 2]" in summary[0]
  # Outputs are never silently replaced.
  assert segment.main([reference, scan, "-o", out, "--quiet"]) == 2
  assert "exists" in capsys.readouterr().err


def _check_volumes_and_qc(out, name, seg):
  """`<name>_volumes.json` holds the written segmentation's counts times the voxel volume;
  `<name>_qc.png` is a picture of the expected size with the image and coloured outlines
  in each of its three panels."""
  from PIL import Image

  from synthjax._src.train import qc

  labels = np.asarray(seg.dataobj)
  mm3 = abs(float(np.linalg.det(seg.affine[:3, :3])))
  with open(os.path.join(out, f"{name}_volumes.json")) as f:
    volumes = json.load(f)
  assert volumes["voxel_volume_mm3"] == pytest.approx(mm3)
  assert set(volumes["labels"]) == {"1", "2"}
  for v in (1, 2):
    count = int(np.sum(labels == v))
    assert volumes["labels"][str(v)]["voxels"] == count
    assert volumes["labels"][str(v)]["mL"] == pytest.approx(count * mm3 / 1000)
  png = np.asarray(Image.open(os.path.join(out, f"{name}_qc.png")).convert("RGB"))
  assert png.shape == (round(qc.FIGSIZE[1] * qc.DPI), round(qc.FIGSIZE[0] * qc.DPI), 3)
  colours = {tuple(c) for c in png.reshape(-1, 3)}
  assert len(colours) > 20
  width = png.shape[1]
  # The panels fill the first three quarters of the width (qc.py's grid), the legend the rest.
  for i in range(3):
    panel = png[60:-30, int(width * (0.03 + 0.25 * i)) : int(width * (0.2 + 0.25 * i))]
    grey = (panel.max(-1) - panel.min(-1)) < 8
    assert grey.mean() > 0.3 and panel[grey].std() > 5, i  # an image, not a blank
    if int(np.sum(labels != 0)) > 0:
      assert (~grey).sum() > 10, i  # label outlines in colour


def _children(pid):
  """Pids of the processes whose parent is `pid` (Linux /proc; empty elsewhere)."""
  out = []
  for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/stat") as f:
          fields = f.read().rsplit(")", 1)[1].split()
      except OSError:
        continue
      if int(fields[1]) == pid:
        out.append(int(entry))
  return out


def test_kill_9_and_resume_gives_bit_identical_losses(problem, reference):
  out = str(problem["root"] / "killed")
  args = [
    sys.executable,
    *TRAIN,
    *problem["common"],
    "-o",
    out,
    "--workers",
    "1",
    "--val",
    problem["val"],
  ]
  proc = subprocess.Popen(
    args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=problem["env"]
  )
  metrics = os.path.join(out, "metrics.jsonl")
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    # Killed after the first checkpoint, so the resume restores one.
    if len(_losses(out)) >= CKPT_EVERY + 2 if os.path.exists(metrics) else False:
      break
    time.sleep(0.01)
  assert proc.poll() is None, "the run ended before it could be killed"
  workers = _children(proc.pid)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # Its Grain workers notice that their parent is gone and end (no orphans).
  deadline = time.time() + 30
  while time.time() < deadline and any(os.path.exists(f"/proc/{w}") for w in workers):
    time.sleep(0.1)
  assert not [w for w in workers if os.path.exists(f"/proc/{w}")], workers
  done = len(_losses(out))
  assert CKPT_EVERY + 2 <= done < STEPS
  # The resumed run needs no fresh process: it runs here.
  _train_here(problem, out, "--resume")
  assert _losses(out) == _losses(reference)  # bit for bit, as JSON floats
  assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == KEPT


def test_sigterm_and_resume_gives_bit_identical_losses(problem, reference, monkeypatch, capsys):
  """`kill -TERM` (how SLURM, Docker and Kubernetes stop a job) after the first checkpoint:
  exit status 143 and one line saying how to continue; `--resume` then finishes the run
  with the losses of an uninterrupted one. The signal is a real one, sent to this process
  during a train step (the kill -9 test above runs the command in its own process)."""
  out = str(problem["root"] / "terminated")
  _stop_at_step(monkeypatch, CKPT_EVERY + 2, None, signum=signal.SIGTERM)
  assert cli.main(["train", *problem["common"], "-o", out]) == 143
  assert capsys.readouterr().err == (
    "synthjax train: terminated (SIGTERM); checkpoints are kept, re-run the same command "
    "with --resume to continue the run\n"
  )
  assert len(_losses(out)) == CKPT_EVERY + 1
  assert str(CKPT_EVERY) in os.listdir(os.path.join(out, "checkpoints"))
  monkeypatch.undo()
  _train_here(problem, out, "--resume")
  assert _losses(out) == _losses(reference)


def _stop_at_step(monkeypatch, n, exc, *, signum=None):
  """Makes the train step built next raise `exc` at its `n`-th call, or send this process
  the signal `signum` there."""
  from synthjax._src.train import steps

  make = steps.make_train_step

  def make_stopping(*args, **kwargs):
    step = make(*args, **kwargs)
    calls = []

    def stopping(*a, **k):
      calls.append(1)
      if len(calls) == n:
        if signum is not None:
          # A missing handler would let the signal end the test process itself.
          assert signal.getsignal(signum) not in (signal.SIG_DFL, signal.SIG_IGN)
          os.kill(os.getpid(), signum)
        else:
          raise exc
      return step(*a, **k)

    return stopping

  monkeypatch.setattr(steps, "make_train_step", make_stopping)


def test_ctrl_c_and_full_disk_leave_a_run_that_resumes(problem, reference, monkeypatch, capsys):
  """Ctrl-C (KeyboardInterrupt in a train step) exits with status 130 and one line; a disk
  that fills up while a checkpoint is written (the write raises ENOSPC) is one line naming
  the run folder, status 2, and keeps the previous checkpoint. `--resume` after both
  finishes the run with the losses of an uninterrupted one."""
  import errno

  import grain

  out = str(problem["root"] / "interrupted")
  _stop_at_step(monkeypatch, 3, KeyboardInterrupt())
  assert cli.main(["train", *problem["common"], "-o", out]) == 130
  err = capsys.readouterr().err
  assert err == (
    "synthjax train: interrupted; checkpoints are kept, re-run the same command "
    "with --resume to continue the run\n"
  )
  assert len(_losses(out)) == 2 and not os.listdir(os.path.join(out, "checkpoints"))
  monkeypatch.undo()
  # The checkpoint of step 2 * CKPT_EVERY fails half-written: the disk is full.
  save = grain.checkpoint.CheckpointHandler.save
  calls = []

  def full_disk(self, directory, *args, **kwargs):
    calls.append(directory)
    if len(calls) == 2:
      with open(os.path.join(str(directory), "partial"), "w") as f:
        f.write("{")
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
    return save(self, directory, *args, **kwargs)

  monkeypatch.setattr(grain.checkpoint.CheckpointHandler, "save", full_disk)
  assert cli.main(["train", *problem["common"], "-o", out, "--resume"]) == 2
  err = capsys.readouterr().err
  assert err.startswith(
    f"synthjax train: error: {out}: no space left on the device at step {2 * CKPT_EVERY} "
  ), err
  assert f"the checkpoint of step {CKPT_EVERY} is kept" in err and "--resume" in err
  assert err.count("\n") == 1
  monkeypatch.undo()
  _train_here(problem, out, "--resume")
  assert _losses(out) == _losses(reference)
  assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == KEPT


def test_full_disk_at_the_start_is_one_line_and_the_command_runs_again(
  problem, tmp_path, monkeypatch, capsys
):
  """run.json cannot be written: one line, status 2, an empty run folder that the same
  command may use once there is space (nothing compiled)."""
  import errno

  out = str(tmp_path / "run")

  def full(path, text):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

  monkeypatch.setattr(train, "atomic_write", full)
  assert train.main([*problem["common"], "-o", out]) == 2
  err = capsys.readouterr().err
  assert err == (
    f"synthjax train: error: {out}: no space left on the device for run.json "
    f"(No space left on device); free some space and run the same command "
    f"again\n"
  )
  assert os.listdir(out) == []
  monkeypatch.undo()
  args, stored = train.prepare_run(
    train.build_parser().parse_args([*problem["common"], "-o", out]), train.build_parser()
  )
  assert stored is None  # the folder is accepted for a new run


def test_two_devices_match_one_device(problem, reference):
  out = str(problem["root"] / "two-devices")
  env = dict(
    problem["env"], XLA_FLAGS=with_fast_compile("--xla_force_host_platform_device_count=2")
  )
  _train(problem, out, env=env)
  np.testing.assert_allclose(_losses(out)[:10], _losses(reference)[:10], rtol=1e-4)
  np.testing.assert_allclose(_losses(out), _losses(reference), rtol=2e-2)


DRIVER = """
import sys, json, numpy as np, jax
from synthjax._src.train import train
args = train.build_parser().parse_args(json.loads(sys.argv[1]))
result = train.run(args)
leaves = jax.tree.leaves(result.params)
np.savez(sys.argv[2], samples=np.stack(result.samples), losses=np.array(result.losses),
         **{f"w{i}": w for i, w in enumerate(leaves)})
"""


def test_two_processes_share_weights_and_split_each_batch(problem, reference, tmp_path):
  out = str(problem["root"] / "two-processes")
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  driver = str(tmp_path / "driver.py")
  with open(driver, "w") as f:
    f.write(DRIVER)
  procs = []
  for i in range(2):
    argv = problem["common"] + [
      "-o",
      out,
      "--coordinator",
      f"127.0.0.1:{port}",
      "--num-processes",
      "2",
      "--process-id",
      str(i),
    ]
    procs.append(
      subprocess.Popen(
        [sys.executable, driver, json.dumps(argv), str(tmp_path / f"p{i}.npz")],
        env=problem["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
  r0, r1 = (np.load(tmp_path / f"p{i}.npz") for i in range(2))
  weights = [k for k in r0.files if k.startswith("w")]
  assert weights and all(np.array_equal(r0[k], r1[k]) for k in weights)
  s0, s1 = r0["samples"], r1["samples"]
  assert s0.shape == s1.shape == (STEPS, 1)
  for step in range(STEPS):
    assert sorted(s0[step].tolist() + s1[step].tolist()) == [2 * step, 2 * step + 1]
  np.testing.assert_array_equal(r0["losses"], r1["losses"])
  np.testing.assert_allclose(r0["losses"][:10], _losses(reference)[:10], rtol=1e-4)


def test_a_2d_net_learns_a_tiny_problem(tmp_path, compilation_cache):
  """Validation Dice on the 'real' scan rises far above chance within 400 steps, trained by
  the command line in a process with XLA's default flags, as users train (the suite's
  compile-time flags slow down long runs, tests/conftest.py)."""
  import synthjax

  n = 16
  paths, val_image, val_labels = write_problem(str(tmp_path / "data"), (n, n, n))
  cfg = synthjax.presets.synthseg(
    (0, 1, 2),
    (n, n, n),
    (2.0, 2.0, 2.0),
    deformation={"std": (0.0, 1.0)},
    resolution={"prob": 0.0},
    bias={"std": (0.0, 0.3)},
    gamma={"std": 0.2},
  )
  config = str(tmp_path / "mild.json")
  with open(config, "w") as f:
    f.write(cfg.to_json())
  out = str(tmp_path / "run")
  argv = paths + [
    "-o",
    out,
    "--config",
    config,
    "--dim",
    "2",
    "--features",
    "8",
    "16",
    "32",
    "--steps",
    "400",
    "--batch",
    "2",
    "--slices",
    "8",
    "--lr",
    "3e-3",
    "--schedule",
    "constant",
    "--ckpt-every",
    "400",
    "--quiet",
    "--val",
    f"{val_image}:{val_labels}",
  ]
  env = dict(
    os.environ,
    JAX_COMPILATION_CACHE_DIR=compilation_cache,
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=without_fast_compile(os.environ.get("XLA_FLAGS", "")),
  )
  proc = subprocess.run(
    [sys.executable, *TRAIN, *argv], capture_output=True, text=True, env=env, timeout=600
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  final = [r for r in plot.read_metrics(os.path.join(out, "metrics.jsonl")) if "mean_dice" in r][-1]
  assert final["step"] == 400
  # Chance: a label of fraction q predicted at random with its own frequency scores ~q.
  truth = np.asarray(nib.load(val_labels).dataobj)
  chance = max(float(np.mean(truth == v)) for v in (1, 2))
  assert chance < 0.1
  # Seeds 0..4 gave 0.57..0.68 mean and at least 0.39 for each label; the core (label 2)
  # is a ball of about 3 voxels' radius (2026-12-05).
  assert final["mean_dice"] > 0.5, final
  assert min(final["dice"].values()) > 0.3, final


@pytest.mark.parametrize(
  "extra,message",
  [
    (["--resume"], "no run to resume"),
    (["--val", "nope.nii.gz"], "IMAGE:LABELS"),
    (["--shape", "17", "16", "16"], "divisible by 2"),
    (["--down", "0"], "--down must be a positive integer"),
    (["--down", "2", "--spacing", "4"], "--down or --spacing, not both"),
    (["--spacing", "2", "0", "2"], "--spacing takes one or three positive lengths"),
    (["--spacing", "-2"], "--spacing takes one or three positive lengths"),
    (["--spacing", "nan"], "got [nan]"),
    (["--spacing", "150"], "(at most 100)"),
    ("priors not JSON", "not an intensity priors JSON"),
    ("priors of label 9", "label(s) [9]"),
    ("foreign folder", "not empty"),
    ("two channels", "num_channels"),
    (["--seeds", "seeds"], "are for --preset fetal, not synthseg"),
    (["--preset", "fetal", "--seeds", "no-such-folder"], "no such seeds folder"),
    ("seeds config without --seeds", "give their folder with --seeds"),
    (["--preset", "fetal", "--seeds", "seeds", "--real", "REAL"], "not seed maps"),
  ],
)
def test_bad_input_is_one_clear_line(problem, tmp_path, capsys, extra, message):
  out = str(tmp_path / "run")
  if extra == "foreign folder":
    os.makedirs(out)
    open(os.path.join(out, "notes.txt"), "w").close()
    extra = []
  elif extra == "two channels":
    import synthjax

    config = str(tmp_path / "two.json")
    with open(config, "w") as f:
      f.write(
        synthjax.presets.synthseg(
          (0, 1, 2), (16, 16, 16), (2.0, 2.0, 2.0), num_channels=2
        ).to_json()
      )
    extra = ["--config", config]
  elif extra == "seeds config without --seeds":
    config = str(tmp_path / "seeds.json")
    with open(config, "w") as f:
      f.write(_seeds_config().to_json())
    extra = ["--config", config]
  elif extra.__class__ is str and extra.startswith("priors"):
    import synthjax

    path = str(tmp_path / "priors.json")
    with open(path, "w") as f:
      f.write(
        "nope"
        if extra.endswith("JSON")
        else synthjax.priors.IntensityPriors(mean=((9, 1.0, 2.0),), std=((9, 1.0, 2.0),)).to_json()
      )
    extra = ["--priors", path]
  extra = [
    {"seeds": str(tmp_path), "no-such-folder": str(tmp_path / "nope"), "REAL": problem["val"]}.get(
      a, a
    )
    for a in extra
  ]
  argv = problem["paths"] + ["-o", out, "--steps", "1", "--features", "4", "8", "--quiet", *extra]
  assert train.main(argv) == 2
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1
  assert not os.path.exists(os.path.join(out, "run.json"))


def write_bad_nifti(src, dst, case):
  """A broken copy of the NIfTI `src` at `dst`: `case` says how it is broken."""
  import gzip

  img = nib.load(src)
  data = np.asarray(img.dataobj)
  if case == "4-D":
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), img.affine), dst)
  elif case == "2-D":
    nib.save(nib.Nifti1Image(data[:, :, 0], img.affine), dst)
  elif case in ("NaN", "constant"):
    bad = data.astype(np.float32)
    if case == "NaN":
      bad[1, 2, 3] = np.nan
    else:
      bad[:] = 7.0
    nib.save(nib.Nifti1Image(bad, img.affine), dst)
  elif case == "unknown label":
    bad = data.copy()
    bad[0, 0, :3] = 7
    nib.save(nib.Nifti1Image(bad, img.affine), dst)
  elif case.endswith("spacing"):
    bad = nib.Nifti1Image(data, None)
    if case == "no spacing":  # pixdim 0 and neither qform nor sform
      bad.header.set_sform(None, code=0)
      bad.header["pixdim"][1:4] = 0
    else:  # through the sform alone: nibabel cannot write such an affine as a qform
      length = {"zero spacing": 0.0, "NaN spacing": np.nan, "huge spacing": 150.0}[case]
      bad.header.set_sform(np.diag([2.0, length, 2.0, 1.0]), code=2)
    bad.header.set_qform(None, code=0)
    nib.save(bad, dst)
  elif case == "not NIfTI":
    with open(dst, "w") as f:
      f.write("subject,age\n1,30\n")
  elif case == "uncompressed as .gz":
    with gzip.open(src) as f:
      raw = f.read()
    with open(dst, "wb") as f:
      f.write(raw)
  elif case == "corrupt gzip":  # truncated: the header reads, the voxels do not
    with open(src, "rb") as f:
      raw = f.read()
    with open(dst, "wb") as f:
      f.write(raw[: len(raw) // 2])
  elif case != "missing":
    raise ValueError(case)
  return dst


BAD_FILES = {
  "4-D": "must be 3-D, got shape (16, 16, 16, 2)",
  "2-D": "must be 3-D, got shape (16, 16)",
  "NaN": "1 non-finite voxel",
  "constant": "constant intensities",
  "zero spacing": "invalid affine",
  "NaN spacing": "invalid affine",
  "huge spacing": "absurd spacing [2.0, 150.0, 2.0] mm",
  "no spacing": "no voxel spacing",
  "not NIfTI": "cannot read as NIfTI",
  "uncompressed as .gz": "cannot read as NIfTI",
  "corrupt gzip": "corrupt or truncated",
  "missing": "no such file",
  "unknown label": "label value(s) not in config.label_values: 7 (3 voxels)",
}


@pytest.mark.parametrize(
  "where,case",
  [
    ("labels", c)
    for c in (
      "4-D",
      "2-D",
      "zero spacing",
      "huge spacing",
      "no spacing",
      "not NIfTI",
      "corrupt gzip",
      "missing",
      "unknown label",
    )
  ]
  + [
    ("val", c)
    for c in ("NaN", "constant", "4-D", "NaN spacing", "uncompressed as .gz", "corrupt gzip")
  ]
  + [("val labels", c) for c in ("2-D", "corrupt gzip")]
  + [("real", c) for c in ("NaN", "constant")]
  + [
    ("segment", c)
    for c in (
      "2-D",
      "NaN",
      "constant",
      "huge spacing",
      "no spacing",
      "not NIfTI",
      "corrupt gzip",
      "missing",
    )
  ],
)
def test_bad_files_are_one_clear_line(problem, reference, tmp_path, capsys, where, case):
  """A bad label map (train), scan or label map of --val or --real (train) or scan
  (segment) is refused in one line naming the file, with status 2, before anything is
  written and before anything is compiled."""
  src = {"labels": problem["paths"][0], "val labels": problem["val_labels"]}.get(
    where, problem["val_image"]
  )
  bad = write_bad_nifti(src, str(tmp_path / f"bad_{where[:3]}.nii.gz"), case)
  capsys.readouterr()  # nibabel's warnings about the file it wrote
  out = str(tmp_path / "out")
  if where == "segment":
    argv = ["segment", reference, problem["val_image"], bad, "-o", out, "--quiet"]
  else:
    common = problem["common"]
    if where == "labels":
      common = [bad] + common[len(problem["paths"]) :]  # --config: the light one, labels 0-2
    pair = (
      f"{problem['val_image']}:{bad}" if where == "val labels" else f"{bad}:{problem['val_labels']}"
    )
    extra = {"val": ["--val", pair], "val labels": ["--val", pair], "real": ["--real", pair]}.get(
      where, []
    )
    argv = ["train", *common, "-o", out, *extra]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"synthjax {argv[0]}: error: {bad}: "), err
  assert BAD_FILES[case] in err and err.count("\n") == 1, err
  assert not os.path.exists(out)


@pytest.mark.parametrize("suffix", segment.OUTPUTS)
def test_segment_never_overwrites_without_overwrite(problem, reference, tmp_path, capsys, suffix):
  """Any one of a scan's four outputs already there is refused in one line naming it,
  before anything is written; the file is left as it was."""
  out = tmp_path / "seg"
  out.mkdir()
  existing = out / f"val_T1w{suffix}"
  existing.write_text("an earlier result")
  assert cli.main(["segment", reference, problem["val_image"], "-o", str(out), "--quiet"]) == 2
  err = capsys.readouterr().err
  assert err == (f"synthjax segment: error: {existing}: exists; pass --overwrite to replace it\n")
  assert os.listdir(out) == [existing.name] and existing.read_text() == "an earlier result"


def test_interrupted_writes_leave_no_partial_file(problem, reference, tmp_path, monkeypatch):
  """Every file the recipe writes goes through a temporary name and a rename: stopped
  before the rename, neither a partial file nor the temporary one is left, and a file
  already there keeps its content. `synthjax segment` stopped between a scan's files keeps
  none of that scan's."""
  from synthjax._src.train import cli as recipe_cli
  from synthjax._src.train import qc

  real_replace = os.replace

  def stopped(src, dst):
    # Only this test's files: JAX's compilation cache renames its own files meanwhile.
    if os.fspath(dst).startswith(str(tmp_path)):
      raise KeyboardInterrupt()
    return real_replace(src, dst)

  monkeypatch.setattr(os, "replace", stopped)
  old = tmp_path / "run.json"
  old.write_text("old")
  writers = [
    lambda p: recipe_cli.atomic_write(p, "new"),
    lambda p: qc.write_json(p, {}),
    lambda p: segment.save(p, np.zeros((2, 2, 2), np.uint8), np.eye(4)),
  ]
  for i, write in enumerate(writers):
    for path in (str(old), str(tmp_path / f"new{i}.nii.gz")):
      with pytest.raises(KeyboardInterrupt):
        write(path)
      assert sorted(os.listdir(tmp_path)) == ["run.json"] and old.read_text() == "old"
  monkeypatch.undo()
  # The segmentation and confidence written, the volumes stopped: none of the scan's files
  # is kept.
  saved, save = [], segment.save
  monkeypatch.setattr(segment, "save", lambda p, *a: (saved.append(p), save(p, *a)))
  monkeypatch.setattr(qc, "write_json", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
  out = str(tmp_path / "seg")
  with pytest.raises(KeyboardInterrupt):
    segment.run(
      segment.build_parser().parse_args([reference, problem["val_image"], "-o", out, "--quiet"])
    )
  assert [os.path.basename(p) for p in saved] == ["val_T1w_seg.nii.gz", "val_T1w_conf.nii.gz"]
  assert os.listdir(out) == []
  # The same with a full disk: one line naming the output folder, status 2.
  import errno

  full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(out, "x"))
  monkeypatch.setattr(qc, "write_json", lambda *a: (_ for _ in ()).throw(full))
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    assert segment.main([reference, problem["val_image"], "-o", out, "--quiet"]) == 2
  lines = err.getvalue().splitlines()  # the run's provenance (three lines), then the error
  assert len(lines) == 4 and "trained with synthjax" in lines[0], lines
  assert lines[3].startswith(
    f"synthjax segment: error: {out}: no space left on the device while writing the outputs of "
  ), lines
  assert os.listdir(out) == []


def test_spacing_and_priors_reach_the_preset(problem, tmp_path):
  import synthjax

  priors = synthjax.priors.IntensityPriors(
    mean=((1, 50.0, 60.0),), std=((1, 1.0, 2.0),), spacing=(1.0, 1.0, 1.0)
  )
  path = str(tmp_path / "priors.json")
  with open(path, "w") as f:
    f.write(priors.to_json())
  args = train.build_parser().parse_args(
    problem["paths"]
    + ["-o", str(tmp_path / "run"), "--preset", "fetal", "--spacing", "4", "--priors", path]
  )
  cfg = train.load_config(args, (0, 1, 2), (4.0, 4.0, 4.0), (8, 8, 8))
  assert cfg.gmm.label_mean == priors.mean and cfg.spacing == (4.0, 4.0, 4.0)
  assert cfg.shape == (8, 8, 8)
  # Measured on 1 mm voxels, given for the preset's 0.5 mm noise voxel.
  assert cfg.gmm.label_std == priors.stds_at((0.5, 0.5, 0.5))


def _seeds_config():
  """The recipe's light config with its two labels' sub-label classes drawn from seed maps."""
  import synthjax

  return synthjax.presets.synthseg(
    (0, 1, 2),
    (16, 16, 16),
    (2.0, 2.0, 2.0),
    **{s: {"enabled": False} for s in ("deformation", "bias", "resolution")},
    subclusters={
      "source": "seeds",
      "num_subclusters": (1, 2),
      "num_meta": 2,
      "meta_labels": ((1,), (2,)),
      "prob": 1.0,
      "enabled": True,
    },
  )


def _write_seed_maps(paths, root, classes):
  """FetalSynthGen's layout for each map: `classes(lab, m, k)` fills meta-label m's voxels."""
  for path in paths:
    lab = np.asarray(nib.load(path).dataobj)
    stem = os.path.basename(path)[: -len(".nii.gz")]
    for k in (1, 2):
      for m in (1, 2):
        layer = np.where(lab == m, 10 * m + classes(lab, m, k), 0).astype(np.int8)
        folder = os.path.join(root, f"subclasses_{k}", "anat")
        os.makedirs(folder, exist_ok=True)
        nib.save(
          nib.Nifti1Image(layer, np.diag([2.0, 2.0, 2.0, 1.0])),
          os.path.join(folder, f"{stem}_mlabel_{m}.nii.gz"),
        )


def test_seed_maps_reach_the_train_step(problem, tmp_path):
  """`--seeds` feeds each patch's seed maps to the rendering: the same run with seed maps
  that split the tissues into classes (a half-space each) and with seed maps of one class
  per tissue trains on different images, and the run records the folder."""
  config = str(tmp_path / "seeds.json")
  with open(config, "w") as f:
    f.write(_seeds_config().to_json())
  halves = lambda lab, m, k: (
    np.arange(lab.shape[0])[:, None, None] * k // lab.shape[0] + np.zeros(lab.shape, int)
  )
  one = lambda lab, m, k: np.zeros(lab.shape, int)
  losses = []
  for name, classes in (("halves", halves), ("one", one)):
    seeds = str(tmp_path / name)
    _write_seed_maps(problem["paths"], seeds, classes)
    out = str(tmp_path / f"run-{name}")
    result = _train_here(problem, out, "--config", config, "--seeds", seeds, "--steps", "3")
    assert len(result.losses) == 3 and np.all(np.isfinite(result.losses))
    with open(os.path.join(out, "run.json")) as f:
      assert json.load(f)["args"]["seeds"] == seeds
    losses.append(result.losses)
  assert losses[0] != losses[1]


def test_resume_refuses_changed_arguments(problem, reference, capsys):
  argv = problem["paths"] + ["-o", reference, "--resume", "--lr", "0.5"]
  assert train.main(argv) == 2
  assert "--lr 0.5 differs" in capsys.readouterr().err


def _train_here(problem, out, *extra):
  """A run in this process (the subprocess runs above cover the command line itself)."""
  argv = problem["common"] + ["-o", out, *extra]
  return train.run(train.build_parser().parse_args(argv))


def test_real_image_fine_tuning_interleaves_real_steps_and_resumes_exactly(problem, reference):
  """Every 2nd step trains on the real pair (augmented by the generator's stages); a run
  stopped after 4 steps and resumed to 6 matches an uninterrupted 6-step run."""
  real = [
    "--real",
    problem["val"],
    "--real-every",
    "2",
    "--schedule",
    "constant",
    "--ckpt-every",
    "2",
  ]
  whole = str(problem["root"] / "real-whole")
  _train_here(problem, whole, *real, "--steps", "6")
  records = [r for r in plot.read_metrics(os.path.join(whole, "metrics.jsonl")) if "loss" in r]
  assert [r.get("real", False) for r in records] == [False, True] * 3
  parted = str(problem["root"] / "real-parted")
  _train_here(problem, parted, *real, "--steps", "4")
  _train_here(problem, parted, "--resume", "--steps", "6")
  assert _losses(parted) == _losses(whole)
  # The real steps differ from synthetic ones at the same step. The reference run trains on
  # synthetic batches only, from the same weights and the same first step (its schedule's
  # rate at step 1 is the constant one's).
  assert _losses(whole)[0] == _losses(reference)[0]
  assert _losses(whole)[1] != _losses(reference)[1]


def test_strength_curriculum_follows_the_step_and_resumes_exactly(problem):
  """`--strength-start 0 --strength-ramp 4`: the generator's strength rises 0, 0.25, 0.5
  with the step, in one compiled step; a run stopped after 2 steps and resumed continues
  the ramp where it was (it follows the optimizer's step count, which the checkpoint
  restores: the kill -9 test shows the resumed losses are bit-identical)."""
  ramp = [
    "--strength-start",
    "0",
    "--strength-ramp",
    "4",
    "--schedule",
    "constant",
    "--ckpt-every",
    "2",
  ]
  parted = str(problem["root"] / "ramp-parted")
  _train_here(problem, parted, *ramp, "--steps", "2")
  _train_here(problem, parted, "--resume", "--steps", "3")
  records = [r for r in plot.read_metrics(os.path.join(parted, "metrics.jsonl")) if "loss" in r]
  assert [r["step"] for r in records] == [1, 2, 3]
  assert [r["strength"] for r in records] == [0.0, 0.25, 0.5]
  problem_args = problem["paths"] + ["-o", str(problem["root"] / "ramp-bad"), "--quiet"]
  assert train.main(problem_args + ["--strength-start", "1.5"]) == 2
  assert train.main(problem_args + ["--strength-start", "0.5", "--strength-ramp", "0"]) == 2


def test_synthjax_train_and_segment_commands(problem, tmp_path, capsys):
  """`synthjax train` then `synthjax segment` on the validation scan, in this process: the
  segmentation lies on the scan's grid and holds only the run's labels."""
  run = str(tmp_path / "run")
  argv = ["train", *problem["common"], "-o", run, "--steps", "2", "--val", problem["val"]]
  assert cli.main(argv) == 0, capsys.readouterr().err
  out = str(tmp_path / "seg")
  assert cli.main(["segment", run, problem["val_image"], "-o", out, "--quiet"]) == 0
  img = nib.load(problem["val_image"])
  seg = nib.load(os.path.join(out, "val_T1w_seg.nii.gz"))
  assert seg.shape == img.shape
  np.testing.assert_allclose(seg.affine, img.affine, atol=1e-5)
  assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2}
  # Bad input is one line naming the command and the file, with status 2.
  capsys.readouterr()
  assert cli.main(["segment", run, str(tmp_path / "nope.nii.gz"), "-o", out]) == 2
  err = capsys.readouterr().err
  assert err.startswith("synthjax segment: error: ") and "nope.nii.gz" in err
  assert err.count("\n") == 1
  assert cli.main(["train", *problem["common"], "-o", run]) == 2
  err = capsys.readouterr().err
  assert err.startswith("synthjax train: error: ") and "--resume" in err
  assert err.count("\n") == 1


def test_curves_are_redrawn_at_every_checkpoint_and_validation(problem, monkeypatch):
  """curves.png follows the run: redrawn (atomically) after the checkpoint of step 2, the
  validation of step 3 and the checkpoint and validation of step 4, each time from the
  metrics written so far."""
  out = str(problem["root"] / "curves")
  metrics = os.path.join(out, "metrics.jsonl")
  drawn = []
  original = plot.plot_curves

  def record(metrics_path, png_path, **kw):
    records = plot.read_metrics(metrics_path)
    drawn.append(
      (
        [r["step"] for r in records if "loss" in r],
        [r["step"] for r in records if "mean_dice" in r],
      )
    )
    assert metrics_path == metrics and png_path == os.path.join(out, "curves.png")
    return original(metrics_path, png_path, **kw)

  monkeypatch.setattr(plot, "plot_curves", record)
  _train_here(
    problem, out, "--steps", "4", "--ckpt-every", "2", "--eval-every", "3", "--val", problem["val"]
  )
  assert drawn == [([1, 2], []), ([1, 2, 3], [3]), ([1, 2, 3, 4], [3, 4])]
  assert os.path.getsize(os.path.join(out, "curves.png")) > 1000
  assert not [n for n in os.listdir(out) if ".tmp" in n]


def test_resume_refuses_changed_or_missing_label_maps(problem, reference, tmp_path, capsys):
  """A resumed run replays its maps: one changed (or gone) since run.json recorded its
  SHA-256 is refused in one line naming it, before anything is written."""
  maps = []
  for i, path in enumerate(problem["paths"]):
    maps.append(str(tmp_path / f"map{i}_dseg.nii.gz"))
    with open(path, "rb") as src, open(maps[-1], "wb") as dst:
      dst.write(src.read())
  with open(os.path.join(reference, "run.json")) as f:
    record = json.load(f)
  record["args"]["labels"] = record["label_paths"] = maps
  record["label_sha256"] = {p: _sha256(p) for p in maps}
  run = tmp_path / "run"
  run.mkdir()
  (run / "run.json").write_text(json.dumps(record))
  with open(maps[1], "rb") as f:
    original = f.read()
  img = nib.load(maps[1])
  changed = np.asarray(img.dataobj).copy()
  changed[0, 0, 0] = 2
  nib.save(nib.Nifti1Image(changed, img.affine), maps[1])
  os.remove(maps[2])
  for name, message in ((maps[1], "changed since the run started"), (maps[2], "missing")):
    assert train.main(["-o", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"synthjax train: error: {name}: ") and message in err, err
    assert err.count("\n") == 1
    assert os.listdir(run) == ["run.json"]
    # Restored byte for byte, the next check is the next map's.
    with open(maps[1], "wb") as f:
      f.write(original)


def test_segment_prints_the_provenance_and_refuses_a_scan_that_cannot_fit(
  problem, reference, tmp_path, capsys, monkeypatch
):
  """The run's provenance as run.json records it (the config's SHA-256, the versions, each
  label map's SHA-256), then a scan too large for the memory available: one line naming
  it, and nothing written."""
  import hashlib

  from synthjax._src import memory

  with open(os.path.join(reference, "run.json")) as f:
    record = json.load(f)
  monkeypatch.setattr(memory, "host_available_bytes", lambda: 1000)
  out = str(tmp_path / "seg")
  assert cli.main(["segment", reference, problem["val_image"], "-o", out, "--quiet"]) == 2
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 4, lines
  assert lines[0].startswith(f"synthjax segment: run {reference}: trained with synthjax ")
  config = json.dumps(record["synth_config"], sort_keys=True).encode()
  assert f"config sha256 {hashlib.sha256(config).hexdigest()[:12]};" in lines[1]
  assert f"jax {record['versions']['jax']}, flax {record['versions']['flax']}" in lines[1]
  assert record["label_sha256"]
  for path, digest in record["label_sha256"].items():
    assert f"{os.path.basename(path)} ({digest[:12]})" in lines[2]
  assert lines[3].startswith(f"synthjax segment: error: {problem['val_image']}: ")
  assert "GiB is available: crop the scan" in lines[3]
  assert not os.path.exists(out)


@pytest.mark.parametrize(
  "case,message",
  [
    ("no run.json", "run.json: no such file"),
    ("no weights", "checkpoints: no checkpoint"),
    ("another major version", "written by synthjax 99.0.0"),
    ("no classes", "missing required key 'classes'"),
    ("no args.dim", "missing required key 'args.dim'"),
    ("run.json not JSON", "cannot read the run record"),
    ("4-D scan", "must be 3-D"),
    ("zero spacing", "invalid affine"),
    ("NaN spacing", "invalid affine"),
  ],
)
def test_segment_refuses_bad_runs_and_scans(problem, reference, tmp_path, capsys, case, message):
  run, scan = reference, problem["val_image"]
  if case in ("4-D scan", "zero spacing", "NaN spacing"):
    scan = str(tmp_path / "bad_T1w.nii.gz")
    data = np.asarray(nib.load(problem["val_image"]).dataobj)
    if case == "4-D scan":
      nib.save(nib.Nifti1Image(np.stack([data, data], -1), np.eye(4)), scan)
    else:
      # Through the sform alone: nibabel cannot write such an affine as a qform.
      img = nib.Nifti1Image(data, None)
      img.header.set_sform(
        np.diag([2.0, 0.0 if case == "zero spacing" else np.nan, 2.0, 1.0]), code=2
      )
      img.header.set_qform(None, code=0)
      nib.save(img, scan)
  else:
    run = str(tmp_path / "run")
    os.makedirs(run)
    with open(os.path.join(reference, "run.json")) as f:
      record = json.load(f)
    if case == "another major version":
      record["versions"]["synthjax"] = "99.0.0"
    elif case == "no classes":
      del record["classes"]
    elif case == "no args.dim":
      del record["args"]["dim"]
    if case == "run.json not JSON":
      with open(os.path.join(run, "run.json"), "w") as f:
        f.write(json.dumps(record)[:100])
    elif case != "no run.json":
      with open(os.path.join(run, "run.json"), "w") as f:
        json.dump(record, f)
  before = sorted(os.listdir(run))
  out = str(tmp_path / "seg")
  assert cli.main(["segment", run, scan, "-o", out, "--quiet"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("synthjax segment: error: ") and message in err, err
  assert err.count("\n") == 1
  assert not os.path.exists(out) and sorted(os.listdir(run)) == before
