"""`synthjax.data.pipeline`: determinism across workers, resume, sharding, keys."""

import dataclasses
import logging
import multiprocessing
import os
import re
import shlex
import shutil
import subprocess
import sys

import chex
import grain
import jax
import nibabel as nib
import numpy as np
import pytest
from _batches import element

from synthjax import data

PATCH = (8, 8, 8)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  folder = tmp_path_factory.mktemp("vols")
  rng = np.random.default_rng(0)
  for i, shape in enumerate([(16, 14, 12), (12, 16, 14), (14, 12, 16), (10, 10, 10)]):
    lab = rng.integers(0, 3, shape).astype(np.int16)
    lab[..., 0] = 10 + i  # identifies the volume in every patch that reaches z = 0
    nib.save(nib.Nifti1Image(lab, np.eye(4)), str(folder / f"v{i}_T2w_dseg.nii.gz"))
    nib.save(
      nib.Nifti1Image(lab.astype(np.float32) * 0.5, np.eye(4)), str(folder / f"v{i}_T2w.nii.gz")
    )
  return data.NiftiSource.from_pairs(folder, cache=False)


def iterate(ds):
  """The pipeline's iterator, a context manager that closes it (stops its workers)."""
  return iter(ds)


def take(ds, n, state=None):
  with iterate(ds) as it:
    if state is not None:
      it.set_state(state)
    return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert set(x) == set(y)
    for k in x:
      assert np.array_equal(x[k], y[k]), k


def test_batches_hold_patches_images_indices_and_keys(source):
  batches = take(
    data.pipeline(source, patch_size=PATCH, batch_size=3, seed=7, patches_per_volume=2), 4
  )
  b = batches[0]
  assert b["labels"].shape == (3,) + PATCH and b["labels"].dtype == np.int32
  assert b["image"].shape == (3,) + PATCH and b["image"].dtype == np.float32
  np.testing.assert_array_equal(np.concatenate([x["index"] for x in batches]), np.arange(12))
  for x in batches:
    for j in range(3):
      v, o = int(x["volume"][j]), x["origin"][j]
      vol = source[v]["labels"].read()
      np.testing.assert_array_equal(x["labels"][j], data.extract_patch(vol, o, PATCH))
      np.testing.assert_array_equal(x["image"][j], x["labels"][j] * 0.5)
    ref = jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(jax.random.key(7), i)))(
      x["index"].astype(np.uint32)
    )
    np.testing.assert_array_equal(x["key"], np.asarray(ref))


def test_epochs_visit_each_volume_patches_per_volume_times(source):
  ds = data.pipeline(
    source, patch_size=PATCH, batch_size=2, seed=1, patches_per_volume=3, num_epochs=2
  )
  batches = list(ds)
  volumes = np.concatenate([b["volume"] for b in batches])
  assert len(volumes) == 2 * 4 * 3
  for epoch in (volumes[:12], volumes[12:]):
    assert sorted(np.bincount(epoch).tolist()) == [3, 3, 3, 3]
    assert all(len(set(epoch[i : i + 3])) == 1 for i in range(0, 12, 3))
  assert not np.array_equal(volumes[:12], volumes[12:])  # reshuffled (4! orders)


def test_seed_changes_the_stream(source):
  a = take(data.pipeline(source, patch_size=PATCH, batch_size=2, seed=1), 3)
  b = take(data.pipeline(source, patch_size=PATCH, batch_size=2, seed=2), 3)
  assert not all(np.array_equal(x["labels"], y["labels"]) for x, y in zip(a, b))
  assert_batches_equal(a, take(data.pipeline(source, patch_size=PATCH, batch_size=2, seed=1), 3))


# What JAX traced, lowered or compiled in this process: JAX reports each trace, lowering
# and compilation to `jax.monitoring` listeners. A data worker is a fresh process (Grain
# spawns it) that imports this module to unpickle BackendProbe before its first element,
# so any JAX computation there is recorded.
_JAX_WORK = []


def _record_jax_work(event, duration_secs, **kwargs):
  del duration_secs, kwargs
  _JAX_WORK.append(event)


if multiprocessing.parent_process() is not None:
  jax.monitoring.register_event_duration_secs_listener(_record_jax_work)


@dataclasses.dataclass
class BackendProbe(grain.transforms.Map):
  """Records, in the worker, the JAX programs run there and the platforms JAX may use."""

  def map(self, element):
    import os

    element["jax_work"] = np.int64(len(_JAX_WORK))
    element["platforms"] = np.bytes_(os.environ.get("JAX_PLATFORMS", ""))
    element["pid"] = np.int64(os.getpid())
    return element


def test_same_batches_for_0_and_2_workers_and_exact_resume(source):
  kw = dict(
    patch_size=PATCH,
    batch_size=2,
    seed=3,
    patches_per_volume=2,
    sampler=data.LabelSampler({1: 1.0, 2: 1.0}),
  )
  serial = take(data.pipeline(source, **kw), 7)
  ds2 = data.pipeline(source, workers=2, transforms=[BackendProbe()], **kw)
  with iterate(ds2) as it:
    first = [next(it) for _ in range(4)]
    state = it.get_state()
    rest = [next(it) for _ in range(3)]
  parallel = first + rest
  assert len({int(b["pid"][0]) for b in parallel}) == 2  # really two worker processes
  for b in parallel:
    assert not b["jax_work"].any()  # no JAX program run in the workers
    assert (b["platforms"] == b"cpu").all()
    for k in ("jax_work", "platforms", "pid"):
      del b[k]
  assert_batches_equal(serial, parallel)
  # Resume from the checkpoint in a new iterator, with workers and without.
  resumed = take(data.pipeline(source, workers=2, transforms=[BackendProbe()], **kw), 3, state)
  for b in resumed:
    for k in ("jax_work", "platforms", "pid"):
      del b[k]
  assert_batches_equal(rest, resumed)
  serial_ds = data.pipeline(source, **kw)
  with iterate(serial_ds) as it:
    [next(it) for _ in range(4)]
    state0 = it.get_state()
  assert_batches_equal(rest, take(serial_ds, 3, state0))


def test_two_simulated_processes_split_the_stream(source):
  kw = dict(patch_size=PATCH, batch_size=2, seed=5, patches_per_volume=2, num_epochs=2)
  full = list(data.pipeline(source, **kw))
  shards = [list(data.pipeline(source, shard=(p, 2), **kw)) for p in range(2)]
  by_index = {int(i): (b, j) for b in full for j, i in enumerate(b["index"])}
  seen = []
  for p, batches in enumerate(shards):
    for b in batches:
      for j, i in enumerate(b["index"]):
        assert int(i) % 2 == p
        ref, rj = by_index[int(i)]
        for k in ("labels", "image", "origin", "key", "volume"):
          np.testing.assert_array_equal(b[k][j], ref[k][rj])
        seen.append(int(i))
  assert sorted(seen) == sorted(by_index)  # disjoint and complete
  with pytest.raises(ValueError, match="shard"):
    data.pipeline(source, shard=(2, 2), **kw)


def test_whole_volumes_and_bad_arguments(source, tmp_path):
  same = data.Subset(source, [0, 0])
  b = take(data.pipeline(same, patch_size=None, batch_size=2, seed=0), 1)[0]
  np.testing.assert_array_equal(b["labels"][0], source[0]["labels"].read())
  with pytest.raises(ValueError, match="one shape"):
    data.pipeline(source, patch_size=None, batch_size=2, seed=0)
  with pytest.raises(ValueError, match="seed"):
    data.pipeline(source, patch_size=PATCH, batch_size=2, seed=-1)
  with pytest.raises(ValueError, match="patch_size"):
    data.pipeline(source, patch_size=(8, 8), batch_size=2, seed=0)
  # A patch larger than a volume is an error naming the file, unless padding is asked for.
  with pytest.raises(ValueError, match=r"v\d_T2w_dseg.nii.gz.*smaller than the patch"):
    data.pipeline(source, patch_size=(20, 20, 20), batch_size=1, seed=0)
  big = take(
    data.pipeline(source, patch_size=(20, 20, 20), batch_size=1, seed=0, pad_small=True), 4
  )
  for x in big:
    shape = source[int(x["volume"][0])]["shape"]
    assert (x["labels"][0] == 0).sum() >= 20**3 - np.prod(shape)


def _cfg():
  # What is checked is how a batch's keys, labels and params reach the generator, the same
  # for every stage: without the deformation, bias and resolution stages the programs
  # compile in about half the time.
  import synthjax

  return synthjax.presets.synthseg(
    (0, 1, 2, 10, 11, 12, 13),
    PATCH,
    **{s: {"enabled": False} for s in ("deformation", "bias", "resolution")},
  )


def test_device_synthesis_of_a_batch_replays_like_the_cli(source):
  import synthjax
  from synthjax._src import samples

  cfg = _cfg()
  batch = take(data.pipeline(source, patch_size=PATCH, batch_size=3, seed=9), 2)[1]
  images, segs, params = jax.jit(lambda b: data.synthesize_batch(b, cfg))(
    {"key": batch["key"], "labels": batch["labels"]}
  )
  for j, index in enumerate(batch["index"]):
    pkey, skey = samples.sample_keys(9, int(index))
    p = synthjax.sample_params(pkey, cfg)
    image, seg = synthjax.synthesize(skey, p, batch["labels"][j], cfg)
    np.testing.assert_array_equal(segs[j], seg)
    np.testing.assert_array_equal(images[j], image)  # bit for bit, as the CLI replays
    chex.assert_trees_all_equal(element(params, j), p)


def test_host_synthesis_transform_matches_device_synthesis(source):
  import pickle

  cfg = _cfg()
  transform = data.SynthesizeTransform(cfg)
  ds = data.pipeline(source, patch_size=PATCH, batch_size=2, seed=4, transforms=[transform])
  host = take(ds, 1)[0]
  images, segs, _ = data.synthesize_batch({"key": host["key"], "labels": host["labels"]}, cfg)
  np.testing.assert_array_equal(host["seg"], np.asarray(segs))
  np.testing.assert_array_equal(host["image"], np.asarray(images))  # bit for bit
  assert host["params"]["gmm"]["means"].shape == (2, 7)
  assert pickle.loads(pickle.dumps(transform)) == transform  # workers receive it pickled


# Shared memory ------------------------------------------------------------------------


def test_buffer_is_sized_from_the_batch_bytes_and_the_budget(source):
  nbytes = data.batch_nbytes(source, PATCH, 2)
  assert nbytes == 2 * (8**3 * (4 + 4) + 36)  # int32 labels, float32 images, index/key...
  assert (
    data.batch_nbytes(source, PATCH, 2, [data.SeedPatches((), (), "", 3)]) == nbytes + 2 * 8**3 * 3
  )
  assert data.shm_in_flight(2, 1, nbytes) == (2 * 4 + 1) * nbytes
  kw = dict(patch_size=PATCH, batch_size=2, seed=3, workers=2)
  ds = data.pipeline(source, shm_budget=data.shm_in_flight(2, 2, nbytes), **kw)
  assert _buffer(ds) == 2
  assert _buffer(data.pipeline(source, shm_budget=data.shm_in_flight(2, 2, nbytes) - 1, **kw)) == 1


def _buffer(ds):
  """The per-worker buffer of a pipeline's multiprocess prefetch (None: no workers)."""
  todo = [ds]
  while todo:
    d = todo.pop()
    if type(d).__name__ == "ProcessPrefetchIterDataset":
      return d._buffer_size
    todo.extend(getattr(d, "_parents", ()))
    todo.extend(getattr(d, "_datasets", None) or ())  # Grain's interleave of the workers
  return None


def test_too_little_shared_memory_falls_back_to_no_workers(source, tmp_path, monkeypatch, caplog):
  kw = dict(patch_size=PATCH, batch_size=2, seed=3, patches_per_volume=2)
  serial = take(data.pipeline(source, **kw), 3)
  real_statvfs = os.statvfs

  class Tiny:
    f_bavail, f_frsize = 4, 4096  # 16 kB free

  monkeypatch.setattr(
    os, "statvfs", lambda p: Tiny() if os.fspath(p) == str(tmp_path) else real_statvfs(p)
  )
  monkeypatch.setenv("SYNTHJAX_SHM_DIR", str(tmp_path))
  assert data.shm_free_bytes() == 16384
  with caplog.at_level(logging.WARNING, logger="synthjax.data"):
    ds = data.pipeline(source, workers=2, **kw)
  assert _buffer(ds) is None
  [record] = caplog.records
  message = record.getMessage()
  assert "\n" not in message and "workers=0" in message and "--shm-size" in message
  assert "emptyDir" in message
  assert_batches_equal(serial, take(ds, 3))


_SHM_SCRIPT = r'''
import gc, os, sys, threading, time
import numpy as np, nibabel as nib
from synthjax import data

def segments():
  return sorted(os.listdir("/dev/shm"))

def peak_bytes(ds, batches):
  """The most bytes of segments in /dev/shm at once while `batches` batches are read."""
  peak, done = [0], threading.Event()

  def sample():
    while not done.is_set():
      total = 0
      for e in os.scandir("/dev/shm"):
        if not e.name.startswith("sem."):
          try:
            total += e.stat().st_size
          except FileNotFoundError:  # freed meanwhile
            pass
      peak[0] = max(peak[0], total)
      time.sleep(0.002)

  thread = threading.Thread(target=sample)
  thread.start()
  with iter(ds) as it:
    for _ in range(batches):
      next(it)
      time.sleep(0.05)  # a slow consumer: the workers fill every buffer
  done.set()
  thread.join()
  return peak[0]

def used_by(ds):
  """The iterator of `ds` after three batches, with the segments in use then."""
  it = iter(ds)
  batches = [next(it) for _ in range(3)]
  time.sleep(1.0)  # the workers fill their buffers
  used = [n for n in segments() if not n.startswith("sem.")]
  assert used, "no batch went through shared memory"
  assert all(type(b["labels"]) is np.ndarray for b in batches)
  return it, batches, used

def left_after_collection(start):
  """Segments beyond `start` still in /dev/shm after a garbage collection (waits up to 5 s)."""
  gc.collect()
  for _ in range(50):
    if segments() == start:
      break
    time.sleep(0.1)
  return len(segments()) - len(start)

def main(folder):
  rng = np.random.default_rng(0)
  for i in range(2):
    lab = rng.integers(0, 3, (32, 32, 32)).astype(np.int16)
    nib.save(nib.Nifti1Image(lab, np.eye(4)), os.path.join(folder, f"v{i}_dseg.nii.gz"))
  source = data.NiftiSource.from_folder(folder)
  start = segments()
  ds = data.pipeline(source, patch_size=24, batch_size=2, seed=0, workers=2,
                     patches_per_volume=4)
  # The most shared memory held, against the stated bound at the largest buffer.
  bound = data.shm_in_flight(2, 2, data.batch_nbytes(source, 24, 2))
  print("peak", peak_bytes(ds, 16), "bound", bound, flush=True)
  # Closed (`peak_bytes` reads through `with iter(ds)`, its buffers full): every segment is
  # released.
  print("after close", left_after_collection(start), flush=True)
  # Dropped without close: every segment is released as well.
  it, _, used = used_by(ds)
  print("in use", len(used), flush=True)
  del it
  print("after drop", left_after_collection(start), flush=True)
  assert segments() == start, (start, segments())
  # Left alive at exit, with its batches: the interpreter's exit releases them quietly.
  globals()["keep"] = used_by(ds)

if __name__ == "__main__":
  main(sys.argv[1])
'''


def _in_small_shm(tmp_path, args, size="64m"):
  """Runs the script above in a mount namespace with its own `size` tmpfs on /dev/shm."""
  if shutil.which("unshare") is None:
    pytest.skip("no unshare")
  probe = subprocess.run(
    ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"], capture_output=True
  )
  if probe.returncode != 0:
    pytest.skip("mount namespaces with a tmpfs are not permitted here")
  script = tmp_path / "shm_script.py"
  script.write_text(_SHM_SCRIPT)
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "JAX_PLATFORMS": "cpu"}
  cmd = (
    f"mount -t tmpfs -o size={size} tmpfs /dev/shm && {shlex.quote(sys.executable)} "
    + " ".join(shlex.quote(str(a)) for a in [script, *args])
    + '; rc=$?; echo "left $(ls /dev/shm | wc -l)"; exit $rc'
  )
  return subprocess.run(
    ["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=300
  )


def test_shared_memory_is_freed_on_close_and_exit_without_tracebacks(tmp_path):
  """In a 64 MB /dev/shm (Docker's default): the shared memory held never exceeds the stated
  bound (`shm_in_flight`), a closed or dropped iterator releases every segment, and one left
  alive at exit leaves nothing behind and prints nothing."""
  folder = tmp_path / "vols"
  folder.mkdir()
  r = _in_small_shm(tmp_path, [folder])
  assert r.returncode == 0, r.stdout + r.stderr
  assert "in use" in r.stdout and "after close 0" in r.stdout and "after drop 0" in r.stdout
  peak, bound = (int(v) for v in re.search(r"peak (\d+) bound (\d+)", r.stdout).groups())
  batch = bound // 13  # shm_in_flight(2, 2, batch): 2 workers x (2 x 2 + 2) + 1 batches
  assert 2 * batch <= peak <= bound, (peak, bound)
  assert "left 0" in r.stdout  # nothing left in /dev/shm once the interpreter is gone
  for text in ("Traceback", "Exception ignored", "leaked"):
    assert text not in r.stderr, r.stderr
