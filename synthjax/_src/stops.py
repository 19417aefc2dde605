"""Clean stops on SIGTERM and Ctrl-C for the long commands.

SIGTERM (how SLURM, Docker and Kubernetes stop a job) raises `Terminated`, Ctrl-C raises
`KeyboardInterrupt`, so one `except` runs the same clean-up for both: queued files are
finished, partial ones removed, checkpoints kept.

A signal handler's exception can land inside a finalizer or a garbage-collector callback
(JAX installs one), where Python prints "Exception ignored" and carries on as if nothing
happened. So the handler also records the signal, and the long loops call `check()` between
units of work: a stop swallowed there is raised again at the next sample, step or scan, and
is not printed as an error where it was swallowed.
"""

import contextlib
import signal
import sys
import threading

_pending = None  # the signal number received and not yet acted on


class Terminated(BaseException):
  """Raised by SIGTERM, like KeyboardInterrupt by SIGINT (a BaseException for the same
  reason: `except Exception` must not swallow a stop)."""


def _exception(signum):
  return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame):
  global _pending
  _pending = signum
  raise _exception(signum)


def check():
  """Raises the stop received since `handled()` began, if any (a no-op otherwise)."""
  global _pending
  if _pending is not None:
    signum, _pending = _pending, None
    raise _exception(signum)


# What a stopped command leaves, and how to go on, by command.
_AFTER_STOP = {
  "train": "checkpoints are kept, re-run the same command with --resume to continue the run",
  "segment": "finished scans are kept, re-run with the remaining scans",
}


def report(prog: str, command: str, stop: BaseException) -> int:
  """Prints the one line a stopped command ends with and returns its exit status (143 for
  SIGTERM, 130 for Ctrl-C, as shells report them)."""
  what = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
  then = _AFTER_STOP.get(
    command, "finished files are kept, re-run the same command to complete the set"
  )
  print(f"{prog}: {what}; {then}", file=sys.stderr)
  return 143 if isinstance(stop, Terminated) else 130


@contextlib.contextmanager
def handled():
  """Installs the SIGTERM and SIGINT handlers for the duration (main thread only: Python
  delivers signals there), restoring the previous ones after."""
  global _pending
  _pending = None
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
  previous_hook = sys.unraisablehook

  def quiet_stops(unraisable):
    if _pending is not None and isinstance(unraisable.exc_value, (Terminated, KeyboardInterrupt)):
      return  # `check()` raises it again
    previous_hook(unraisable)

  sys.unraisablehook = quiet_stops
  try:
    yield
  finally:
    sys.unraisablehook = previous_hook
    for s, h in previous.items():
      signal.signal(s, h)
    _pending = None
