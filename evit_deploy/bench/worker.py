"""One backend measured in a process of its own: it loads once, warms up to a steady state, then runs blocks of
timed calls when the coordinator (:mod:`.protocol`) tells it to, and idles in between. No other runtime lives in
its process, so no thread pool of another runtime competes with it, and no two workers run at the same time.

A timed call is what a user's call costs: the input handed over, the inference, the outputs read back
(``Backend.run``; PyTorch: the module's call). The runtime's bare call (``Backend.bare_call``: what its own
benchmark tool times) is timed beside it on request, to report the harness's own overhead.

Messages (a ``multiprocessing`` connection over a socket pair; the first is the :class:`WorkerSpec`): the worker
sends ``("ready", info)``, then answers ``("block", n)`` with ``("block", [ms, ...])``, ``("overhead", n)`` with
``("overhead", {"timed_ms", "bare_ms"})``, and stops on ``("stop",)`` or when the pipe closes. A failure is sent
as ``("error", one line)`` before the worker exits 1.
"""

from __future__ import annotations

import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..host import rss_mb

KINDS = ("pytorch-eager", "pytorch-compile", "artifact")


@dataclass(frozen=True)
class Warmup:
    """Warm-up to a steady state: at least ``min_calls`` calls and ``min_s`` seconds, then until the median of the
    last ``window`` calls is within ``tolerance`` of the window before it; at most ``max_s`` seconds."""

    min_calls: int = 3
    min_s: float = 1.0
    max_s: float = 20.0
    window: int = 5
    tolerance: float = 0.05


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker measures: PyTorch eager or compiled (the model the export was made from, built as its
    manifest names it), or one artifact of the export folder, at one batch size with ``threads`` threads."""

    key: str
    kind: str  # one of KINDS
    folder: str
    batch: int
    threads: int
    artifact: str | None = None  # the artifact's path in the folder (kind "artifact")
    weights: str | None = None  # the checkpoint PyTorch rows are built from (None: the export's own or random)
    ema: bool = False
    gpu: bool = False  # PyTorch rows on the GPU (beside GPU artifacts), copies included
    warmup: Warmup = field(default_factory=Warmup)
    seed: int = 0
    require_signature: str | bool | None = None  # the folder's signing key (see artifacts.read_manifest)
    shared_cpu: bool = False  # artifact: idle runtime threads must not spin (a variant; production spins)
    options: dict[str, str] = field(default_factory=dict)  # artifact: runtime options over the export's
    competitor: Any = None  # the CompetitorCard of a competitor's export, as the coordinator resolved it
    table: str | None = None  # and its paper table


@dataclass
class Loaded:
    """A loaded backend: its timed call, its bare call and what the row says of it."""

    timed: Callable[[], object]
    bare: Callable[[], object]
    info: dict[str, Any]


def _input(spec: WorkerSpec, size: tuple[int, int]) -> Any:
    import numpy as np

    rng = np.random.default_rng(spec.seed + spec.batch)
    return rng.standard_normal((spec.batch, 3, *size), dtype=np.float32)


def load_pytorch(spec: WorkerSpec) -> Loaded:
    import warnings

    import torch

    from ..artifacts import check_name, read_manifest
    from ..compare.cards import paper_tables
    from ..compare.subjects import competitor_subject, subject_for
    from ..zoo import RandomWeightsWarning

    torch.set_num_threads(spec.threads)
    folder = Path(spec.folder)
    manifest = read_manifest(folder, verify=False, require_signature=spec.require_signature)
    weights = spec.weights
    recorded = manifest.weights.get("file")
    if weights is None and recorded and (folder / check_name(recorded, "weights file")).is_file():
        weights = str(folder / recorded)  # a checkpoint the user put beside the artifacts
    if spec.competitor is not None:
        subject = competitor_subject(spec.competitor, paper_tables()[spec.table])
    else:
        subject = subject_for(manifest.model, weights, spec.ema or bool(manifest.weights.get("ema")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)  # said at export time; the report records it
        graph = subject.bench_graph(subject.build(manifest.input_size)).eval()
    device = "cuda" if spec.gpu else "cpu"
    graph = graph.to(device)
    x = torch.from_numpy(_input(spec, manifest.input_size))
    settings: dict[str, Any] = {"threads": torch.get_num_threads(), "device": device,
                                "torch": torch.__version__.split("+")[0]}
    if spec.kind == "pytorch-compile":
        graph = torch.compile(graph, backend="inductor", dynamic=False)
        started = time.perf_counter()
        with torch.inference_mode():
            graph(x.to(device))  # compiles: timed here, never in a block
        settings |= {"compiler": "torch.compile(backend='inductor', dynamic=False)",
                     "compile_s": round(time.perf_counter() - started, 2)}
    on_device = x.to(device)

    def timed() -> object:
        out = graph(x.to(device) if spec.gpu else x)
        return out.cpu() if spec.gpu else out  # .cpu() waits for the GPU: copies and compute included

    def bare() -> object:
        out = graph(on_device)
        if spec.gpu:
            torch.cuda.synchronize()
        return out

    return Loaded(timed, bare, {"backend": "pytorch", "format": spec.kind, "precision": "fp32",
                                "settings": settings})


def load_artifact(spec: WorkerSpec) -> Loaded:
    from .. import runtime
    from ..artifacts import read_manifest
    from ..errors import EvitError

    folder = Path(spec.folder)
    # the signature (when required) is verified again here, and the artifact hash-checked as it is opened
    manifest = read_manifest(folder, verify=False, require_signature=spec.require_signature)
    entry = next((a for a in manifest.artifacts if a.path == spec.artifact), None)
    if entry is None:
        raise EvitError(f"{folder} lists no artifact {spec.artifact}")
    backend = runtime.open_artifact(folder, manifest, entry, spec.threads, shared_cpu=spec.shared_cpu,
                                    options=spec.options)
    feeds = {backend.inputs[0].name: _input(spec, manifest.input_size)}
    return Loaded(lambda: backend.run(feeds), backend.bare_call(feeds),
                  {"backend": backend.name, "format": entry.format, "precision": entry.precision,
                   "settings": backend.facts, "input_name": backend.inputs[0].name})


def warm(call: Callable[[], object], w: Warmup) -> tuple[int, float]:
    """Call until steady (see :class:`Warmup`); returns (calls made, median ms of the last window)."""
    times: list[float] = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - started
        if len(times) >= max(w.min_calls, 2 * w.window) and elapsed >= w.min_s:
            last = statistics.median(times[-w.window:])
            before = statistics.median(times[-2 * w.window:-w.window])
            if abs(last - before) <= w.tolerance * before:
                break
        if elapsed >= w.max_s and len(times) >= 2:
            break
    return len(times), statistics.median(times[-w.window:])


def _timed_block(call: Callable[[], object], n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _overhead(loaded: Loaded, n: int) -> dict[str, float]:
    """Timed and bare calls alternated ``n`` times: the median of each."""
    timed, bare = [], []
    for _ in range(n):
        timed += _timed_block(loaded.timed, 1)
        bare += _timed_block(loaded.bare, 1)
    return {"timed_ms": statistics.median(timed), "bare_ms": statistics.median(bare)}


def serve(spec: WorkerSpec, conn: Connection) -> None:
    """Load, warm up, report ready, then answer the coordinator until told to stop."""
    import contextlib

    started = time.perf_counter()
    loaded = load_artifact(spec) if spec.kind == "artifact" else load_pytorch(spec)
    load_s = time.perf_counter() - started
    mode = contextlib.nullcontext()
    if spec.kind != "artifact":
        import torch

        mode = torch.inference_mode()
    with mode:
        calls, est_ms = warm(loaded.timed, spec.warmup)
        conn.send(("ready", {**loaded.info, "load_s": round(load_s, 2), "warmup_calls": calls, "est_ms": est_ms,
                             "rss_mb": rss_mb()}))
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the coordinator is gone
                return
            if message[0] == "block":
                conn.send(("block", _timed_block(loaded.timed, message[1])))
            elif message[0] == "overhead":
                conn.send(("overhead", _overhead(loaded, message[1])))
            else:
                return


def main(fd: int) -> None:
    """The worker process's entry point: ``python -m evit_deploy.bench.worker FD`` (FD: its end of a socket pair;
    the first message is its :class:`WorkerSpec`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's: it stops the workers
    conn = Connection(fd)
    try:
        serve(conn.recv(), conn)
    except BaseException as exc:  # noqa: BLE001 - reported to the coordinator as the row's error
        from ..errors import EvitError, one_line

        text = one_line(exc, 300) if isinstance(exc, EvitError) else f"{type(exc).__name__}: {one_line(exc, 300)}"
        try:
            conn.send(("error", text))
        except (OSError, ValueError):
            pass
        sys.exit(1)
    finally:
        conn.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
