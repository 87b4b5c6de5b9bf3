"""Builds that belong to the server, not to a browser tab.

Building the default run, recording a run again and building a null network take from seconds to
minutes. Each runs in one background thread owned by the server-wide :class:`Jobs` registry (a
``st.cache_resource`` singleton, :func:`registry`): closing the tab that started it does not stop
it, every tab that opens the dashboard meanwhile follows the same job, and a second request for
the same work joins the running job instead of starting another.

A job's progress comes from fercore's ``progress(done, total, stage)`` callback
(:func:`fercore.pipeline.build_run` reports ``"train (2/5)"`` style stages over a total of 1000 per
stage). :meth:`Job.snapshot` turns it into what the page shows: the current stage, fold n/k
during training, the share done weighted by what each stage costs (:data:`STAGE_SECONDS`), the
elapsed time and an estimate of what remains.

The thread never calls Streamlit; pages poll the snapshot (:func:`app.ui.follow_job`).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st

#: Measured cost of each pipeline stage of the default build on two CPU cores (seconds, wall);
#: the progress bar and the estimate of what remains weigh the stages by these. Measured with
#: ``python scripts/refresh_docs.py --stages`` (see docs/dashboard.md).
STAGE_SECONDS = {"phantom": 4.0, "train": 160.0, "record": 2.0, "null": 2.0, "analyze": 2.0}
PIPELINE = tuple(STAGE_SECONDS)
#: Training rounds :data:`STAGE_SECONDS` ``train`` covers (the default's 10 folds); a job of fewer
#: rounds (the first look: one) weighs its training by its share.
REFERENCE_ROUNDS = 10
#: Seconds one step of the reference workload (:func:`reference_step`: a training step of the
#: default network's size, batch 16 of 48 px faces) took on the two free cores :data:`STAGE_SECONDS`
#: were measured on, 15.5 ms at load 1.4-2 (``python -c "from app.jobs import reference_step; print(reference_step())"``).
REFERENCE_STEP_SECONDS = 0.0155
_STAGE_RE = re.compile(r"^(\w+) \((\d+)/(\d+)\)")


@dataclass
class Job:
    """One piece of server-side work and its progress (read it through :meth:`snapshot`)."""

    id: str
    kind: str
    target: str
    label: str
    stages: tuple[str, ...]
    rounds: int | None = None
    started_by: str = ""
    started: float = field(default_factory=time.time)
    stage: str = ""
    frac: float = 0.0
    stage_started: float = field(default_factory=time.monotonic)
    t0: float = field(default_factory=time.monotonic)
    finished: float | None = None
    error: str | None = None
    details: str = ""
    result: str | None = None
    pace: float = 1.0  # this machine's time for the reference workload over the reference's, at start
    about: str = ""  # what the job is about beyond its target (the background default: the first-look run)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    # -------------------------------------------------------------------------- progress
    def progress(self, done: float, total: float, stage: str = "") -> None:
        """fercore's ``progress(done, total, stage)`` callback (called from the job's thread)."""
        m = _STAGE_RE.match(stage or "")
        if m and m.group(1) in self.stages:
            name, frac = m.group(1), (done / 1000.0 - (int(m.group(2)) - 1)) if total else 0.0
        elif stage == "done":
            name, frac = (self.stages[-1] if self.stages else ""), 1.0
        else:  # a single-stage job reports its own (done, total)
            name, frac = (self.stages[0] if self.stages else stage), (done / total if total else 0.0)
        frac = min(max(float(frac), 0.0), 1.0)
        with self._lock:
            if name != self.stage:
                self.stage, self.stage_started = name, time.monotonic()
            self.frac = frac

    @property
    def running(self) -> bool:
        return self.finished is None

    def snapshot(self) -> dict:
        """What a page shows: ``label``, ``stage``, ``stage_number`` (1-based) of ``n_stages``,
        ``fold`` ("3/10" while training, else ""), ``fraction`` (0..1, weighted by
        :data:`STAGE_SECONDS`), ``elapsed`` and ``remaining`` (seconds; remaining None until
        it can be told), ``running``, ``error``, ``details``, ``result``, ``started`` (epoch s),
        ``started_by``."""
        with self._lock:
            stage, frac, stage_t = self.stage, self.frac, time.monotonic() - self.stage_started
            elapsed = (self.finished or time.monotonic()) - self.t0
            running = self.finished is None
        weights = [STAGE_SECONDS.get(s, 1.0) * (self.rounds / REFERENCE_ROUNDS if s == "train" and self.rounds else 1.0)
                   for s in self.stages]
        i = self.stages.index(stage) if stage in self.stages else 0
        done_w = sum(weights[:i]) + weights[i] * frac if self.stages else 0.0
        fraction = 1.0 if not running and not self.error else (done_w / sum(weights) if weights else 0.0)
        remaining = None
        if running and self.stages:
            # this stage from its own pace once it has one, later stages from their measured cost,
            # scaled by how this machine compares with the measurement: on this stage once it has
            # run a while, before that by the reference workload timed when the job started
            if frac > 0.02 and stage_t > 1.0:
                here = stage_t * (1 - frac) / frac
                pace = min(max(stage_t / (weights[i] * frac), 0.25), 8.0)
            else:
                here, pace = weights[i] * (1 - frac) * self.pace, self.pace
            remaining = here + pace * sum(weights[i + 1:])
        fold = ""
        if stage == "train" and self.rounds:
            fold = f"{min(self.rounds, int(frac * self.rounds) + 1)}/{self.rounds}"
        return {"id": self.id, "kind": self.kind, "target": self.target, "label": self.label, "stage": stage,
                "stage_number": i + 1, "n_stages": len(self.stages), "fold": fold, "fraction": float(fraction),
                "elapsed": float(elapsed), "remaining": remaining, "running": running, "error": self.error,
                "details": self.details, "result": self.result, "started": self.started,
                "started_by": self.started_by}

    # ------------------------------------------------------------------------------- run
    def _run(self, work: Callable[[Callable], object], done: Callable[[], None] | None) -> None:
        try:
            if "train" in self.stages:  # the estimate before training has a pace of its own
                self.pace = machine_pace()
            out = work(self.progress)
            self.result = None if out is None else str(out)
        except Exception as e:  # shown in the page by whoever follows the job
            self.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self.details = "".join(traceback.format_exception(e))
        finally:
            if done is not None:
                with contextlib.suppress(Exception):  # clearing caches must not hide the outcome
                    done()
            with self._lock:
                self.finished = time.monotonic()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests and scripts); True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running


def reference_step(steps: int = 8, repeats: int = 3) -> float:
    """Seconds per step of the reference workload: SGD training steps of a zero-bias CNN of the
    default network's size (conv 8 / 16 / 128, 5x5, batch 16 of 48 px faces), the best of
    ``repeats`` runs of ``steps`` steps (after one warm-up step)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 128, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * 6 * 6, 300), nn.ReLU(), nn.Linear(300, 8))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(16, 1, 48, 48, generator=gen), torch.randint(0, 8, (16,), generator=gen)

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    step()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def machine_pace() -> float:
    """How much slower (> 1) or faster this machine runs the reference workload now than the
    machine :data:`STAGE_SECONDS` were measured on with two free cores, between 0.25 and 8."""
    try:
        return min(max(reference_step() / REFERENCE_STEP_SECONDS, 0.25), 8.0)
    except Exception:  # an estimate must never stop a build
        return 1.0


class Jobs:
    """The server's jobs: at most one running per (kind, target)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def start(self, kind: str, target: str, work: Callable[[Callable], object], *, label: str,
              stages: tuple[str, ...], rounds: int | None = None, started_by: str = "",
              done: Callable[[], None] | None = None) -> tuple[Job, bool]:
        """Start ``work(progress)`` in a thread, or join the running job of the same kind and target.

        Returns
        -------
        (Job, bool)
            The job, and whether this call started it.
        """
        with self._lock:
            running = self.find(kind, target)
            if running is not None:
                return running, False
            job = Job(id=uuid.uuid4().hex[:12], kind=kind, target=target, label=label, stages=tuple(stages),
                      rounds=rounds, started_by=started_by)
            job._thread = threading.Thread(target=job._run, args=(work, done), name=f"fercore-{kind}", daemon=True)
            self._jobs[job.id] = job
            job._thread.start()
            return job, True

    def find(self, kind: str, target: str = "") -> Job | None:
        """The running job of ``kind`` on ``target`` (None when there is none)."""
        return next((j for j in self._jobs.values() if j.kind == kind and j.target == target and j.running), None)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def latest(self, kind: str, target: str = "") -> Job | None:
        """The most recent job of ``kind`` on ``target``, running or not."""
        jobs = [j for j in self._jobs.values() if j.kind == kind and j.target == target]
        return max(jobs, key=lambda j: j.t0) if jobs else None

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.running]


@st.cache_resource(show_spinner=False)
def registry() -> Jobs:
    """The one job registry of this server (shared by every session)."""
    return Jobs()


def session_id() -> str:
    """This browser session's id ("" outside a script run)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""
