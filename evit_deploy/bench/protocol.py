"""The measurement protocol: every backend in a worker process of its own (:mod:`.worker`), native tools as
separate programs (:mod:`.native`), timed in alternating blocks — A B C A B C … with the order rotated each round —
so drift and noise fall on every row alike and no two runtimes ever run at the same time.

Rounds go on until every row's median has a 95% confidence interval within ±``ci_pct`` % (after ``min_blocks``
rounds) or ``budget_s`` runs out; rows that did not settle are named. A worker that dies is marked failed with its
exit code and the others finish.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..errors import EvitError, one_line
from ..host import cores
from .native import NativeFailure, NativeRunner
from .stats import Stats, summarize
from .worker import Warmup, WorkerSpec

MIN_ROUNDS = 2  # a confidence interval needs two blocks: even a spent budget runs two rounds
READY_TIMEOUT_S = 1800.0  # loading and warming up one backend (a SAM-ViT-H encoder on 2 cores takes minutes)
START_S = 3.0  # starting a worker: a fresh interpreter importing torch and its runtime (2.4-4.5 s measured here)
Progress = Callable[[str], None]


@dataclass
class ProtocolSettings:
    """How rows are measured (defaults for a quiet machine; ``bench run --help`` shows each)."""

    threads: int = field(default_factory=cores)
    block_s: float = 0.5  # seconds of calls per block
    min_blocks: int = 5  # rounds before a row may settle
    ci_pct: float = 5.0  # a row is settled when its median's 95% CI is within ± this
    budget_s: float = 120.0  # rounds stop when this much time has gone (loading not counted)
    settle_s: float = 0.05  # idle gap before each block: the previous runtime's threads go quiet
    overhead_calls: int = 20  # at most this many timed/bare call pairs measure the harness overhead per worker
    warmup: Warmup = field(default_factory=Warmup)
    native: bool = True  # run the native tools where installed

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class WorkerDied(Exception):
    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode


class WorkerHandle:
    """The coordinator's side of one worker process: ``python -m evit_deploy.bench.worker FD`` (a fresh interpreter,
    whatever the caller's main module is), talking over a socket pair; its stderr goes to a file whose last line
    explains a crash that sent no message."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        ours, theirs = socket.socketpair()
        self.log = tempfile.TemporaryFile(mode="w+", prefix="evit-worker-")
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # the evit_deploy this process runs
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        try:
            self.process = subprocess.Popen([sys.executable, "-m", "evit_deploy.bench.worker", str(theirs.fileno())],
                                            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send(spec)

    @property
    def exitcode(self) -> int | None:
        return self.process.poll()

    def _died(self) -> WorkerDied:
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            pass
        self.log.seek(0)
        lines = [ln.strip() for ln in self.log.read().splitlines() if ln.strip()]
        last = f": {one_line(lines[-1], 200)}" if lines else ""
        return WorkerDied(f"the worker process died (exit code {self.exitcode}){last}", self.exitcode)

    def _receive(self, timeout_s: float | None = None) -> tuple:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.conn.poll(0.2):
            if self.exitcode is not None:
                if self.conn.poll(0):
                    break
                raise self._died()
            if deadline is not None and time.monotonic() > deadline:
                raise WorkerDied(f"the worker did not answer in {timeout_s:.0f} s")
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            raise self._died() from None
        if message[0] == "error":
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
            raise WorkerDied(message[1], self.exitcode)
        return message

    def ready(self) -> dict[str, Any]:
        return self._receive(READY_TIMEOUT_S)[1]

    def ask(self, *message: Any) -> Any:
        try:
            self.conn.send(message)
        except (OSError, ValueError):
            raise self._died() from None
        return self._receive()[1]

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop",))
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.conn.close()
        self.log.close()


@dataclass
class Outcome:
    """What the protocol measured of one contender."""

    key: str
    blocks: list[list[float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # the worker's ready message
    status: str = "ok"  # ok, unsettled, failed (and a native tool's: failed, unparsed)
    error: str | None = None
    overhead: dict[str, float] | None = None
    native: bool = False

    @property
    def stats(self) -> Stats:
        return summarize(self.blocks)


@dataclass
class Contender:
    """A worker to start, or a native runner made once its row's worker is ready (``make_native``)."""

    key: str
    spec: WorkerSpec | None = None
    native_for: str | None = None  # the key of the worker row a native tool is measured beside
    make_native: Callable[[dict[str, Any], float], NativeRunner | None] | None = None


def _settled(outcome: Outcome, settings: ProtocolSettings) -> bool:
    ci = outcome.stats.ci_pct
    return len(outcome.blocks) >= settings.min_blocks and ci is not None and ci <= settings.ci_pct


def run(contenders: list[Contender], settings: ProtocolSettings, progress: Progress = lambda text: None
        ) -> dict[str, Outcome]:
    """Measure every contender by the protocol (see the module docstring); outcomes by key."""
    outcomes = {c.key: Outcome(c.key, native=c.spec is None) for c in contenders}
    workers: dict[str, WorkerHandle] = {}
    natives: dict[str, NativeRunner] = {}
    try:
        for c in [c for c in contenders if c.spec is not None]:  # one at a time: loads and warm-ups do not overlap
            progress(f"loading and warming up {c.key}")
            handle = WorkerHandle(c.spec)
            try:
                outcomes[c.key].info = handle.ready()
                workers[c.key] = handle
            except WorkerDied as exc:
                _fail(outcomes[c.key], exc)
                handle.stop()
        for c in [c for c in contenders if c.spec is None]:
            row = outcomes.get(c.native_for or "")
            runner = c.make_native(row.info, settings.block_s) if row and row.status == "ok" and c.make_native else None
            if runner is None:
                outcomes[c.key].status, outcomes[c.key].error = "failed", "its row was not measured"
            else:
                natives[c.key] = runner
                outcomes[c.key].info = runner.describe()
        calls = {key: max(1, round(settings.block_s * 1e3 / max(outcomes[key].info["est_ms"], 1e-3)))
                 for key in workers}
        _rounds(workers, natives, calls, outcomes, settings, progress)
        for key, handle in workers.items():
            if outcomes[key].status != "failed":
                try:
                    # pairs of (timed, bare) calls: as many as fit one block, 3 .. overhead_calls
                    pairs = max(3, min(settings.overhead_calls, calls[key]))
                    outcomes[key].overhead = handle.ask("overhead", pairs)
                except WorkerDied as exc:
                    _fail(outcomes[key], exc)
    finally:
        for handle in workers.values():
            handle.stop()
    return outcomes


def _fail(outcome: Outcome, exc: WorkerDied) -> None:
    outcome.status = "failed"
    outcome.error = str(exc) + (f" (exit code {exc.exitcode})" if exc.exitcode not in (None, 1) and
                                "exit code" not in str(exc) else "")


def _rounds(workers: dict[str, WorkerHandle], natives: dict[str, NativeRunner], calls: dict[str, int],
            outcomes: dict[str, Outcome], settings: ProtocolSettings, progress: Progress) -> None:
    started = time.perf_counter()
    round_s = 0.0
    for n in _count():
        active = [k for k in (*workers, *natives) if outcomes[k].status != "failed"]
        if not active:
            return
        order = active[n % len(active):] + active[:n % len(active)]
        round_started = time.perf_counter()
        for key in order:
            time.sleep(settings.settle_s)
            try:
                block = workers[key].ask("block", calls[key]) if key in workers else natives[key].block()
            except WorkerDied as exc:
                _fail(outcomes[key], exc)
                continue
            except NativeFailure as exc:
                outcomes[key].status, outcomes[key].error = exc.status, exc.detail
                continue
            outcomes[key].blocks.append(block)
        round_s = time.perf_counter() - round_started
        spent = time.perf_counter() - started
        measured = [outcomes[k] for k in active if outcomes[k].status != "failed"]
        settled = sum(_settled(o, settings) for o in measured)
        progress(f"round {n + 1}: {settled}/{len(measured)} rows settled (95% CI within ±{settings.ci_pct:g}%), "
                 f"{spent:.0f}/{settings.budget_s:.0f} s")
        if settled == len(measured) or (n + 1 >= MIN_ROUNDS and spent + round_s > settings.budget_s):
            break
    for outcome in outcomes.values():
        if outcome.status == "ok" and not _settled(outcome, settings):
            outcome.status = "unsettled"
            ci = outcome.stats.ci_pct
            outcome.error = (f"did not settle within the {settings.budget_s:g} s budget: 95% CI "
                             + (f"±{ci:.1f}%" if ci is not None else "unknown") + f" after {len(outcome.blocks)} "
                             f"blocks (wanted ±{settings.ci_pct:g}% after at least {settings.min_blocks})")


def _count() -> Iterator[int]:
    n = 0
    while True:
        yield n
        n += 1


def untimed_s(call_s: float, settings: ProtocolSettings) -> float:
    """Estimated seconds one worker row costs outside the timed rounds, for calls of ``call_s`` seconds: starting
    and loading (START_S and a call), warm-up (see :class:`~.worker.Warmup`: its first calls or ``min_s``, at most
    ``max_s`` and a call) and the harness-overhead pairs."""
    w = settings.warmup
    warmup = min(max(max(w.min_calls, 2 * w.window) * call_s, w.min_s), max(w.max_s, call_s) + call_s)
    pairs = max(3, min(settings.overhead_calls, round(settings.block_s / max(call_s, 1e-6))))
    return START_S + call_s + warmup + 2 * pairs * call_s


def min_rounds_s(call_s: float, settings: ProtocolSettings) -> float:
    """Estimated seconds one row takes in the rounds every run makes, however little budget is left."""
    return MIN_ROUNDS * (settings.settle_s + max(settings.block_s, call_s))


def check_settings(settings: ProtocolSettings) -> None:
    """Refuse settings no measurement can run with (one line)."""
    if settings.threads < 1:
        raise EvitError("--threads must be at least 1")
    if settings.block_s <= 0 or settings.budget_s <= 0:
        raise EvitError("--block-s and --budget-s must be positive")
    if settings.min_blocks < 2:
        raise EvitError("--min-blocks must be at least 2 (a confidence interval needs two blocks)")
