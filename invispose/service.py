"""Run a long-lived command the way service managers stop it.

systemd, Docker and `timeout` stop a service with SIGTERM (or SIGINT from a terminal) to
its whole process group. The processes Ray starts for `invispose up` (raylet, GCS,
workers) are in that group too, so such a signal used to kill Ray underneath the driver
while it was still trying to stop in order: the driver then waited on a dead cluster.

``run_in_own_session`` therefore runs the real command in a session of its own, with
everything it starts, and stays behind in the caller's process group: a signal there
reaches only this thin parent, which forwards one SIGTERM to the command and waits for
its orderly stop. A second signal, or a stop longer than ``stop_deadline_s``, kills the
command's whole group. If the parent dies, Linux sends the command SIGTERM (parent-death
signal), so no cluster outlives it. Signals that arrive within ``REPEAT_S`` of the first
are the same stop delivered twice (make passes it on as well) and are ignored.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

WORKER_ENV = "INVISPOSE_SERVICE_WORKER"  # set in the command's environment
PR_SET_PDEATHSIG = 1
REPEAT_S = 2.0  # a second signal this much after the first kills at once


def stop_on_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` (the runtime installs it first thing, before Ray is
    imported, and again after ``ray.init``, which installs handlers of its own)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


def is_worker() -> bool:
    """True inside the command that ``run_in_own_session`` started."""
    return os.environ.get(WORKER_ENV) == "1"


def _die_with_parent() -> None:  # preexec_fn: runs in the child before exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def run_in_own_session(argv: Sequence[str], stop_deadline_s: float = 20.0) -> int:
    """Run ``argv`` in a new session, forwarding SIGINT/SIGTERM; its exit status."""
    child = subprocess.Popen(
        list(argv), env={**os.environ, WORKER_ENV: "1"}, start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    stop_at: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        if stop_at:
            # a second signal a while later (Ctrl-C again): the user wants it gone now;
            # one sooner is the same stop delivered twice (to the group and by make)
            if time.monotonic() - stop_at[0] >= REPEAT_S:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
            return
        stop_at.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                rc = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stop_at and time.monotonic() - stop_at[0] > stop_deadline_s:
                    print(f"invispose: no orderly stop within {stop_deadline_s:.0f} s; killing",
                          file=sys.stderr, flush=True)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    with contextlib.suppress(ProcessLookupError):  # anything the command left behind
        os.killpg(child.pid, signal.SIGKILL)
    return 128 - rc if rc < 0 else rc
