"""NIfTI and ArrayRecord sample writers: round trips, atomicity, resumption, Grain reading."""

import errno
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest

from synthjax.data import (
  ArrayRecordWriter,
  NiftiWriter,
  decode_record,
  encode_record,
  read_arrayrecord,
  write_dataset,
)

SHAPE = (12, 10, 8)  # not a cube, so that a swapped axis shows
N = 8  # NIfTI samples per run
N_AR, SHARD = 10, 4  # ArrayRecord samples per run and per shard: shards of 4, 4, 2
# Exactly representable in float32, the precision of a NIfTI header's sform.
AFFINE = np.array([[2.0, 0, 0, -10.5], [0, 1.5, 0, 4.25], [0, 0, 3.0, 3.0], [0, 0, 0, 1]])


def fake_sample(i):
  """A cheap deterministic sample of index `i` (the subprocess tests import it too)."""
  rng = np.random.default_rng(i)
  image = rng.random(SHAPE, dtype=np.float32)
  image[0, 0, 0] = np.float32(1e-40) * i  # subnormal values must survive too
  return {
    "image": image,
    "seg": rng.integers(0, 60, SHAPE).astype(np.int32),
    "affine": AFFINE.copy(),
    "index": i,
    "sidecar": {
      "index": i,
      "seed": 7,
      "params": {"gamma": [0.1 * i, -3e-7], "flip": i % 2 == 0},
      "key": [i, 2**32 - 1],
      "note": "sampl\u00e9",
    },
  }


def files(folder):
  return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def read_json(path):
  with open(path) as f:
    return json.load(f)


def stats(paths):
  return {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in paths}


def interrupt_at(k, exc=KeyboardInterrupt):
  def make(i):
    if i == k:
      raise exc(f"interrupted at {i}")
    return fake_sample(i)

  return make


def run_killed(writer_expr, n, kill_at):
  """Runs `write_dataset(writer_expr, range(n), ...)` in a process SIGKILLed at `kill_at`."""
  script = textwrap.dedent(f"""
      import os, signal
      from test_writers import fake_sample
      from synthjax.data import ArrayRecordWriter, NiftiWriter, write_dataset

      def make(i):
        if i == {kill_at}:
          os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind runs
        return fake_sample(i)

      write_dataset({writer_expr}, range({n}), make)
  """)
  # The child imports this file's `fake_sample`: its folder goes on the child's path.
  path = os.pathsep.join(p for p in (os.path.dirname(__file__), os.environ.get("PYTHONPATH")) if p)
  out = subprocess.run(
    [sys.executable, "-c", script],
    capture_output=True,
    text=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path},
  )
  assert out.returncode == -signal.SIGKILL, out.stderr


@pytest.fixture(scope="module")
def nifti_reference(tmp_path_factory):
  folder = tmp_path_factory.mktemp("nifti_ref")
  assert write_dataset(NiftiWriter(folder), range(N), fake_sample) == list(range(N))
  return files(folder)


@pytest.fixture(scope="module")
def ar_reference(tmp_path_factory):
  folder = tmp_path_factory.mktemp("ar_ref")
  written = write_dataset(
    ArrayRecordWriter(folder / "train", shard_size=SHARD), range(N_AR), fake_sample
  )
  assert written == list(range(N_AR))
  return files(folder)


def assert_same_sample(got, want):
  for k in ("image", "seg", "affine"):
    a, b = np.asarray(got[k]), np.asarray(want[k], np.float64 if k == "affine" else None)
    assert a.dtype == b.dtype and a.shape == b.shape, k
    assert a.tobytes() == b.tobytes(), k
  assert got["index"] == want["index"]
  assert got["sidecar"] == want["sidecar"]


# ------------------------------------------------------------------------------------------
# NIfTI


@pytest.mark.parametrize("seg_dtype", [np.int32, np.int16, np.uint8])
def test_nifti_round_trip(tmp_path, seg_dtype):
  with NiftiWriter(tmp_path) as w:
    for i in range(2):
      s = fake_sample(i)
      s["seg"] = s["seg"].astype(seg_dtype)
      w.write(s)
  for i in range(2):
    s = fake_sample(i)
    img_path, seg_path, json_path = w.paths(i)
    img, seg = nib.load(img_path), nib.load(seg_path)
    image, labels = np.asanyarray(img.dataobj), np.asanyarray(seg.dataobj)
    assert image.dtype == np.float32 and image.tobytes() == s["image"].tobytes()
    assert labels.dtype == seg_dtype and np.array_equal(labels, s["seg"])
    assert np.array_equal(img.affine, AFFINE) and np.array_equal(seg.affine, AFFINE)
    with open(json_path) as f:
      assert json.load(f) == s["sidecar"]
  assert w.done() == {0, 1}
  assert sorted(os.listdir(tmp_path)) == sorted(
    os.path.basename(p) for i in range(2) for p in w.paths(i)
  )


def test_nifti_int64_seg_is_stored_as_int32(tmp_path):
  s = fake_sample(0)
  s["seg"] = s["seg"].astype(np.int64)
  with NiftiWriter(tmp_path) as w:
    w.write(s)
  labels = np.asanyarray(nib.load(w.paths(0)[1]).dataobj)
  assert labels.dtype == np.int32 and np.array_equal(labels, s["seg"])
  s["seg"][0, 0, 0] = 2**40
  with pytest.raises(ValueError, match="do not fit int32"):
    NiftiWriter(tmp_path, overwrite=True, max_pending=0).write(s)


@pytest.mark.parametrize("max_pending", [0, 4])
def test_nifti_interrupt_then_resume(tmp_path, nifti_reference, max_pending):
  with pytest.raises(KeyboardInterrupt):
    write_dataset(NiftiWriter(tmp_path, max_pending=max_pending), range(N), interrupt_at(3))
  w = NiftiWriter(tmp_path, max_pending=max_pending)
  assert w.done() == {0, 1, 2}  # queued writes were finished, nothing after them started
  before = stats([p for i in range(3) for p in w.paths(i)])
  assert write_dataset(w, range(N), fake_sample) == list(range(3, N))
  assert stats(before) == before  # the complete samples were not rewritten
  assert files(tmp_path) == nifti_reference


def test_a_sigterm_swallowed_by_a_finalizer_stops_before_the_next_sample(tmp_path, capfd):
  """A signal handler's exception can land where Python swallows it (a finalizer, JAX's
  garbage-collector callback): the stop still happens, at the next sample, and nothing is
  printed as an error where it was swallowed."""
  from synthjax._src import stops

  class SignalledWhileFinalized:
    def __del__(self):
      os.kill(os.getpid(), signal.SIGTERM)

  def make(i):
    if i == 2:
      SignalledWhileFinalized()  # collected at once: the handler raises inside __del__
    return fake_sample(i)

  with stops.handled(), pytest.raises(stops.Terminated):
    write_dataset(NiftiWriter(tmp_path, max_pending=2), range(N), make, progress=False)
  assert NiftiWriter(tmp_path).done() == {0, 1, 2}  # sample 2 finished, 3 never started
  assert capfd.readouterr().err == ""
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are restored
  stops.check()  # and nothing is left pending


def test_nifti_sigkill_then_resume(tmp_path, nifti_reference):
  run_killed(f"NiftiWriter({str(tmp_path)!r})", N, kill_at=5)
  # What a killed run can leave besides its own: a stray temporary (also one whose name looks
  # like a sample's) and an image whose sample never got its JSON (stale content).
  (tmp_path / ".tmp-stray.nii.gz").write_bytes(b"\x1f\x8b half a gzip")
  (tmp_path / ".tmp-sample_00006_params.json").write_text("{")
  (tmp_path / "sample_00006_image.nii.gz").write_bytes(nifti_reference["sample_00000_image.nii.gz"])

  w = NiftiWriter(tmp_path)
  done = w.done()
  assert done and done <= set(range(5))
  for name, data in files(tmp_path).items():
    if not name.startswith(".tmp-") and name != "sample_00006_image.nii.gz":
      # Any file with a final name is whole: equal to the uninterrupted run's.
      assert data == nifti_reference[name], name
  before = stats([p for i in done for p in w.paths(i)])

  assert write_dataset(w, range(N), fake_sample) == sorted(set(range(N)) - done)
  assert stats(before) == before
  strays = {".tmp-stray.nii.gz", ".tmp-sample_00006_params.json"}
  assert strays <= set(os.listdir(tmp_path))
  removed = NiftiWriter(tmp_path).cleanup()
  assert {os.path.basename(p) for p in removed} >= strays
  assert all(os.path.basename(p).startswith(".tmp-") for p in removed)
  assert files(tmp_path) == nifti_reference
  for i in range(N):  # and decoded, not just as bytes
    img_path, seg_path, json_path = w.paths(i)
    s = fake_sample(i)
    assert np.asanyarray(nib.load(img_path).dataobj).tobytes() == s["image"].tobytes()
    assert np.array_equal(np.asanyarray(nib.load(seg_path).dataobj), s["seg"])
    assert read_json(json_path) == s["sidecar"]


def test_nifti_cleanup_removes_files_of_incomplete_samples(tmp_path, nifti_reference):
  with NiftiWriter(tmp_path) as w:
    w.write(fake_sample(0))
  (tmp_path / "sample_00001_seg.nii.gz").write_bytes(nifti_reference["sample_00001_seg.nii.gz"])
  (tmp_path / ".tmp-abc").write_text("x")
  removed = w.cleanup()
  assert sorted(os.path.basename(p) for p in removed) == [".tmp-abc", "sample_00001_seg.nii.gz"]
  assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in w.paths(0))


def test_nifti_write_error_mid_file(tmp_path, nifti_reference, monkeypatch):
  real_save = nib.save
  bad_seg = fake_sample(2)["seg"]

  def flaky_save(img, filename):
    real_save(img, filename)
    if img.get_data_dtype() == np.int32 and np.array_equal(np.asanyarray(img.dataobj), bad_seg):
      with open(filename, "r+b") as f:  # a disk that filled up halfway through the file
        f.truncate(os.path.getsize(filename) // 2)
      raise OSError(errno.ENOSPC, "No space left on device", filename)

  monkeypatch.setattr(nib, "save", flaky_save)
  with pytest.raises(OSError, match="No space left"):
    write_dataset(NiftiWriter(tmp_path), range(N), fake_sample)
  monkeypatch.setattr(nib, "save", real_save)

  w = NiftiWriter(tmp_path)
  assert 2 not in w.done() and {0, 1} <= w.done()
  assert not os.path.exists(w.paths(2)[1])
  for name, data in files(tmp_path).items():
    assert not name.startswith(".tmp-")  # save_nifti removed its temporary
    assert data == nifti_reference[name], name
  assert 2 in write_dataset(w, range(N), fake_sample)
  assert files(tmp_path) == nifti_reference


def test_nifti_failed_overwrite_leaves_sample_incomplete(tmp_path, monkeypatch):
  with NiftiWriter(tmp_path) as w:
    w.write(fake_sample(0))
  other = dict(fake_sample(5), index=0, sidecar={"index": 0})

  def failing_seg_save(img, filename):
    if img.get_data_dtype() == np.int32:
      raise OSError(errno.EIO, "I/O error", filename)
    real_save(img, filename)

  real_save = nib.save
  monkeypatch.setattr(nib, "save", failing_seg_save)
  with pytest.raises(OSError, match="I/O error"), NiftiWriter(tmp_path, overwrite=True) as w2:
    w2.write(other)
  # The new image replaced the old one but the seg did not: the old JSON must not vouch for it.
  assert w.done() == set()


def test_nifti_overwrite_protection(tmp_path):
  with NiftiWriter(tmp_path) as w:
    w.write(fake_sample(0))
  json_path = w.paths(0)[2]
  before = files(tmp_path)
  other = dict(fake_sample(5), index=0, sidecar={"index": 0, "other": True})
  with pytest.raises(FileExistsError, match=re.escape(json_path)), NiftiWriter(tmp_path) as w2:
    w2.write(other)
  assert files(tmp_path) == before

  with NiftiWriter(tmp_path, overwrite=True) as w3:
    w3.write(other)
  assert np.array_equal(np.asanyarray(nib.load(w.paths(0)[0]).dataobj), other["image"])
  assert read_json(json_path) == {"index": 0, "other": True}
  assert w3.done() == {0}

  with (
    pytest.raises(FileExistsError, match=re.escape(w.paths(1)[2])),
    NiftiWriter(tmp_path, max_pending=4) as w4,
  ):  # twice in one run: queued or written
    w4.write(fake_sample(1))
    w4.write(fake_sample(1))


def test_nifti_writer_copies_queued_arrays(tmp_path):
  s = fake_sample(0)
  with NiftiWriter(tmp_path, max_pending=4) as w:
    w.write(s)
    s["image"][:] = -1  # the caller reuses its buffer at once
  image = np.asanyarray(nib.load(w.paths(0)[0]).dataobj)
  assert image.tobytes() == fake_sample(0)["image"].tobytes()


def test_malformed_samples_are_rejected(tmp_path):
  w = NiftiWriter(tmp_path, max_pending=0)
  s = fake_sample(0)
  with pytest.raises(ValueError, match="lacks key"):
    w.write({k: v for k, v in s.items() if k != "affine"})
  with pytest.raises(ValueError, match="seg shape"):
    w.write(dict(s, seg=s["seg"][:-1]))
  with pytest.raises(ValueError, match="integer dtype"):
    w.write(dict(s, seg=s["seg"].astype(np.float32)))
  with pytest.raises(ValueError, match="sidecar says index 0"):
    w.write(dict(s, index=1))
  with pytest.raises(TypeError, match="JSON"):
    w.write(dict(s, sidecar={"x": object()}))
  with pytest.raises(ValueError, match="returned a sample with index 0"):
    write_dataset(w, [3], lambda i: fake_sample(0))
  assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------
# Records and ArrayRecord


def test_record_round_trip_is_bitwise_and_deterministic():
  s = fake_sample(3)
  s["image"] = s["image"].astype(">f4")  # byte order is part of the dtype kept
  s["image"][1, 2, 3] = np.nan
  s["seg"] = s["seg"].astype(np.int64)
  rec = encode_record(s)
  assert encode_record(fake_sample(3)) == encode_record(fake_sample(3))
  out = decode_record(rec)
  assert_same_sample(out, s)
  out["image"][0] = 0  # writable
  with pytest.raises(ValueError, match="not a synthjax record"):
    decode_record(b"garbage" * 4)
  with pytest.raises(ValueError, match="truncated"):
    decode_record(rec[:-1])


def test_arrayrecord_round_trip(tmp_path):
  written = write_dataset(
    ArrayRecordWriter(tmp_path / "train", shard_size=SHARD), range(N_AR), fake_sample
  )
  assert written == list(range(N_AR))
  names = sorted(os.listdir(tmp_path))
  assert [n for n in names if n.endswith(".array_record")] == [
    f"train.{k:05d}.array_record" for k in range(3)
  ]
  assert not any("partial" in n for n in names)
  src = read_arrayrecord(tmp_path / "train")
  assert len(src) == N_AR
  for j in range(N_AR):
    assert_same_sample(src[j], fake_sample(j))
  assert src[-1]["index"] == N_AR - 1
  # A glob and a file list read the same shards.
  assert len(read_arrayrecord(str(tmp_path / "train.*"))) == N_AR
  assert len(read_arrayrecord([str(tmp_path / "train.00002.array_record")])) == 2
  assert ArrayRecordWriter(tmp_path / "train").done() == set(range(N_AR))


@pytest.mark.parametrize("how", ["exception", "sigkill"])
def test_arrayrecord_resume_after_interruption_mid_shard(tmp_path, ar_reference, how):
  prefix = tmp_path / "train"
  if how == "exception":
    with pytest.raises(KeyboardInterrupt):
      write_dataset(ArrayRecordWriter(prefix, shard_size=SHARD), range(N_AR), interrupt_at(6))
    complete = set(range(4))  # shard 0; the open shard (4, 5) is discarded
  else:
    run_killed(f"ArrayRecordWriter({str(prefix)!r}, shard_size={SHARD})", N_AR, kill_at=9)
    complete = set(range(8))  # shards 0 and 1; index 8 was in the open shard
    assert os.path.exists(f"{prefix}.partial-00002")

  w = ArrayRecordWriter(prefix, shard_size=SHARD)
  assert w.done() == complete
  assert len(read_arrayrecord(prefix)) == len(complete)  # the partial shard is not read
  shards = [f"{prefix}.{k:05d}.array_record" for k in range(len(complete) // SHARD)]
  before = stats(shards)

  assert write_dataset(w, range(N_AR), fake_sample) == sorted(set(range(N_AR)) - complete)
  assert stats(shards) == before
  assert files(tmp_path) == ar_reference  # the partial shard was replaced, not kept
  src = read_arrayrecord(prefix)
  assert [src[j]["index"] for j in range(len(src))] == list(range(N_AR))
  for j in range(N_AR):
    assert_same_sample(src[j], fake_sample(j))


def test_arrayrecord_done_without_index_files(tmp_path):
  with ArrayRecordWriter(tmp_path / "train", shard_size=SHARD) as w:
    for i in (5, 2, 9, 0, 7):
      w.write(fake_sample(i))
  for name in os.listdir(tmp_path):
    if name.endswith(".indices.json"):
      os.remove(tmp_path / name)
  assert ArrayRecordWriter(tmp_path / "train").done() == {0, 2, 5, 7, 9}


def test_arrayrecord_cleanup(tmp_path):
  prefix = tmp_path / "train"
  with ArrayRecordWriter(prefix, shard_size=SHARD) as w:
    w.write(fake_sample(0))
  (tmp_path / "train.partial-00003").write_bytes(b"half")
  (tmp_path / "train.00003.indices.json").write_text('{"indices": [1]}')
  (tmp_path / "other.partial-00003").write_bytes(b"not ours")
  removed = ArrayRecordWriter(prefix).cleanup()
  assert sorted(os.path.basename(p) for p in removed) == [
    "train.00003.indices.json",
    "train.partial-00003",
  ]
  assert sorted(os.listdir(tmp_path)) == [
    "other.partial-00003",
    "train.00000.array_record",
    "train.00000.indices.json",
  ]


def test_arrayrecord_overwrite_protection(tmp_path):
  prefix = tmp_path / "train"
  write_dataset(ArrayRecordWriter(prefix, shard_size=2), range(4), fake_sample)
  before = files(tmp_path)
  with (
    pytest.raises(FileExistsError, match=re.escape(f"{prefix}.00001.array_record")),
    ArrayRecordWriter(prefix, shard_size=2) as w,
  ):
    w.write(fake_sample(2))
  assert files(tmp_path) == before
  with (
    pytest.raises(FileExistsError, match="already written to this shard"),
    ArrayRecordWriter(prefix, shard_size=2) as w,
  ):
    w.write(fake_sample(7))
    w.write(fake_sample(7))
  assert files(tmp_path) == before  # the open shard was discarded

  w = ArrayRecordWriter(prefix, overwrite=True)
  assert w.done() == set() and os.listdir(tmp_path) == []
  other = dict(fake_sample(6), index=1, sidecar={"index": 1})
  with w:
    w.write(other)
  src = read_arrayrecord(prefix)
  assert len(src) == 1
  assert_same_sample(src[0], other)


def test_read_arrayrecord_missing(tmp_path):
  (tmp_path / "train.partial-00000").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match="no complete shard"):
    read_arrayrecord(tmp_path / "train")
  with pytest.raises(FileNotFoundError, match="matches no"):
    read_arrayrecord(str(tmp_path / "train*"))


def test_arrayrecord_source_pickles_and_feeds_grain(tmp_path):
  import grain

  write_dataset(ArrayRecordWriter(tmp_path / "train", shard_size=SHARD), range(6), fake_sample)
  src = read_arrayrecord(tmp_path / "train")
  assert src[1]["index"] == 1  # the readers are open; pickling must drop them
  clone = pickle.loads(pickle.dumps(src))
  assert len(clone) == 6
  for j in range(6):
    assert_same_sample(clone[j], fake_sample(j))

  ds = grain.MapDataset.source(clone)
  assert_same_sample(ds[4], fake_sample(4))
  assert [s["index"] for s in ds] == list(range(6))
  shuffled = [s["index"] for s in ds.shuffle(seed=3)]
  assert sorted(shuffled) == list(range(6)) and shuffled != list(range(6))
  batches = list(ds.batch(4).to_iter_dataset())
  assert [b["image"].shape for b in batches] == [(4, *SHAPE), (2, *SHAPE)]
  assert np.array_equal(batches[1]["index"], [4, 5])


# ------------------------------------------------------------------------------------------
# Real samples


@pytest.fixture(scope="module")
def real_samples():
  import synthjax
  from synthjax._src import phantom, samples

  labels, affine = phantom.brain_phantom((16, 16, 16), 8.0)
  config = synthjax.presets.synthseg(
    sorted(np.unique(labels).tolist()), (16, 16, 16), (8.0, 8.0, 8.0)
  )
  out = []
  for i in range(2):  # as datasets.generate builds them
    pkey, skey = samples.sample_keys(11, i)
    params = synthjax.sample_params(pkey, config)
    image, seg = synthjax.synthesize(skey, params, labels, config)
    sidecar = samples.make_sidecar(
      seed=11,
      index=i,
      synth_key=skey,
      params_key=pkey,
      params=params,
      config=config,
      source={"demo": "16^3"},
      version=synthjax.__version__,
    )
    out.append(
      {
        "image": np.asarray(image),
        "seg": np.asarray(seg, np.int32),
        "affine": samples.output_affine(
          affine, labels.shape, config.shape, params["crop"]["position"]
        ),
        "index": i,
        "sidecar": sidecar,
      }
    )
  return labels, out


def test_real_samples_round_trip_and_replay(tmp_path, real_samples):
  import synthjax
  from synthjax._src.config import SynthConfig

  labels, samples = real_samples
  write_dataset(NiftiWriter(tmp_path / "nii"), range(2), lambda i: samples[i])
  write_dataset(ArrayRecordWriter(tmp_path / "ar" / "train"), range(2), lambda i: samples[i])
  src = read_arrayrecord(tmp_path / "ar" / "train")
  w = NiftiWriter(tmp_path / "nii")
  for i, s in enumerate(samples):
    side = json.loads(json.dumps(s["sidecar"]))  # JSON has lists where the dict had tuples
    assert_same_sample(src[i], dict(s, sidecar=side))
    assert read_json(w.paths(i)[2]) == side
    img = nib.load(w.paths(i)[0])
    assert np.asanyarray(img.dataobj).tobytes() == s["image"].tobytes()
    np.testing.assert_allclose(img.affine, s["affine"], rtol=0, atol=1e-5)
  # The sidecar read back is enough to regenerate the sample bit for bit.
  side = src[1]["sidecar"]
  config = SynthConfig.from_dict(side["config"])
  image, _ = synthjax.synthesize(
    synthjax.key_from_json(side["key"]),
    synthjax.params_from_json(side["params"], config),
    labels,
    config,
  )
  assert np.asarray(image).tobytes() == samples[1]["image"].tobytes()
