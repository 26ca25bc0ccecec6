"""Benchmark an export folder (or export first): PyTorch (eager, and torch.compile on request) and every artifact,
interleaved, one report."""

from __future__ import annotations

import contextlib
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .. import runtime
from ..artifacts import FORMATS, check_name, read_manifest
from ..errors import EvitError, one_line
from ..export.pipeline import ExportRequest, run_export, versions
from ..zoo import RandomWeightsWarning, create_model, get_card
from .measure import Contender, interleaved, peak_rss_mb, summarize
from .reference import hardware_rows, model_facts

MAX_PYTORCH_BATCH = 64  # the largest batch PyTorch is benchmarked at beside a static-batch export
BENCH_ROLES = ("model", "encoder")  # the SAM decoder is light and prompt-dependent: not benchmarked here
BASELINES = ("eager", "compile")  # PyTorch rows: eager (every ratio is against it), torch.compile (inductor)
ProgressFactory = Callable[[str, int], contextlib.AbstractContextManager[Callable[[], None]]]


@contextlib.contextmanager
def no_progress(label: str, total: int) -> Iterator[Callable[[], None]]:
    yield lambda: None


@dataclass
class BenchSettings:
    batches: list[int] = field(default_factory=lambda: [1])
    runs: int = 30
    warmup: int = 5
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    baselines: list[str] = field(default_factory=lambda: ["eager"])  # of BASELINES; eager is always one


def parse_baselines(text: str) -> list[str]:
    """``eager,compile`` → ["eager", "compile"]; eager is the reference every ratio is against, so it is required."""
    names = list(dict.fromkeys(b.strip() for b in text.split(",") if b.strip()))
    unknown = [b for b in names if b not in BASELINES]
    if unknown or "eager" not in names:
        problem = f"'{unknown[0]}' is not one" if unknown else "eager (the reference of every ratio) is missing"
        raise EvitError(f"--baselines takes {', '.join(BASELINES)} (comma-separated, eager included); {problem}")
    return names


def compiled_baseline(module: torch.nn.Module, call_with: Callable[[torch.nn.Module], object]
                      ) -> tuple[Callable[[], object], float]:
    """``torch.compile`` (inductor, static shapes) of ``module`` and its compile time in seconds: the first call,
    which compiles, is timed here and never again (raises on a compile failure, e.g. no C++ compiler)."""
    compiled = torch.compile(module, backend="inductor", dynamic=False)
    with torch.inference_mode():
        start = time.perf_counter()
        call_with(compiled)
        seconds = time.perf_counter() - start
    return (lambda: call_with(compiled)), seconds


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(threads: int) -> dict[str, Any]:
    return {
        "device": "cpu",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "label": f"this machine: {cpu_model()}, {threads} threads",
    }


def _batch_ok(backend: runtime.Backend, batch: int) -> bool:
    dim = backend.inputs[0].shape[0]
    return not isinstance(dim, int) or dim == batch


def bench_export(folder: str | Path, settings: BenchSettings, weights: str | None = None,
                 progress: ProgressFactory = no_progress, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Measure PyTorch eager and each runnable artifact of an export folder at each batch size.

    ``model``: the PyTorch model of the export when the caller already has it (else built from ``weights``).
    """
    folder = Path(folder)
    manifest = read_manifest(folder, verify=False)  # each artifact is hash-checked as it is opened below
    card = get_card(manifest.model)
    # Static exports are skipped at other batches (PyTorch still runs), dynamic ones stop at their maximum.
    limit = manifest.batch.max if manifest.batch.dynamic else max(manifest.batch.size, MAX_PYTORCH_BATCH)
    too_big = [b for b in settings.batches if b > limit]
    if too_big:
        raise EvitError(f"{folder} is benchmarked at batches up to {limit}; got --batch {too_big[0]}")
    recorded = manifest.weights.get("file")
    if weights is None and recorded:  # a checkpoint the user put beside the artifacts
        weights = str(folder / check_name(recorded, "weights file")) if (folder / recorded).is_file() else None
    torch.set_num_threads(settings.threads)
    if model is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)  # said at export time; the report records it
            model = create_model(card.name, weights, ema=bool(manifest.weights.get("ema")))
    baseline = model.image_encoder if card.task == "sam" else model
    on_gpu = torch.cuda.is_available() and any(FORMATS[a.format].gpu for a in manifest.artifacts)
    if on_gpu:  # compare GPU engines with PyTorch on the same GPU, input and output copies included
        baseline = baseline.cuda()
    h, w = manifest.input_size
    artifacts = [a for a in manifest.artifacts if a.role in BENCH_ROLES and a.runnable]
    backends = []
    for a in artifacts:
        try:
            backends.append((a, runtime.open_artifact(folder, manifest, a, settings.threads, shared_cpu=True)))
        except EvitError as exc:
            raise type(exc)(f"cannot benchmark {a.path}: {exc}") from None

    results, skipped = [], []
    for batch in settings.batches:
        x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(batch))
        x_np = x.numpy()
        feeds = {}
        def call_with(module: torch.nn.Module, x: torch.Tensor = x) -> object:
            return module(x.cuda()).cpu() if on_gpu else module(x)

        contenders = [Contender("pytorch", lambda: call_with(baseline))]
        meta = {"pytorch": {"backend": "pytorch", "format": "pytorch-eager", "artifact": None, "precision": "fp32"}}
        if "compile" in settings.baselines:
            try:
                with progress(f"batch {batch}: torch.compile (inductor), not timed", 1) as tick:
                    compiled_call, compile_s = compiled_baseline(baseline, call_with)
                    tick()
            except Exception as exc:  # noqa: BLE001 - inductor needs a C++ compiler; the other rows still run
                skipped.append(f"pytorch-compile at batch {batch}: torch.compile failed ({one_line(exc, 160)})")
            else:
                contenders.append(Contender("pytorch-compile", compiled_call))
                meta["pytorch-compile"] = {"backend": "pytorch", "format": "pytorch-compile", "artifact": None,
                                           "precision": "fp32", "compile_s": round(compile_s, 2),
                                           "runtime": {"compiler": "torch.compile(backend='inductor', dynamic=False)",
                                                       "compile_s": round(compile_s, 2)}}
        for a, backend in backends:
            if not _batch_ok(backend, batch):
                skipped.append(f"{a.path} at batch {batch}: static batch {backend.inputs[0].shape[0]}")
                continue
            key = a.path
            feeds[key] = {backend.inputs[0].name: x_np}
            contenders.append(Contender(key, lambda b=backend, f=feeds[key]: b.run(f)))
            meta[key] = {"backend": backend.name, "format": a.format, "artifact": a.path, "precision": a.precision,
                         "runtime": backend.facts}
        with torch.inference_mode(), progress(f"batch {batch}: {len(contenders)} backends", settings.runs) as tick:
            interleaved(contenders, settings.runs, settings.warmup, tick)
        base = None
        for c in contenders:
            stats = summarize(c.times_ms, batch)
            base = stats["median"] if c.key == "pytorch" else base
            results.append(meta[c.key] | {
                "batch": batch,
                "latency_ms": {k: v for k, v in stats.items() if k != "throughput_img_s"},
                "throughput_img_s": stats["throughput_img_s"],
                "rss_growth_mb": round(c.rss_growth_mb, 1),
                "pytorch_device": "cuda" if on_gpu else "cpu",
                "ratio_to_pytorch": stats["median"] / base if base else None,
                "host_device_copies": "included" if on_gpu else "n/a: CPU backends read host memory",
                "device": f"this machine ({torch.cuda.get_device_name() if on_gpu else 'cpu'})",
            })
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": card.name,
        "task": card.task,
        "target": manifest.target,
        "export": str(folder),
        "input_size": [h, w],
        "measured": "image encoder only" if card.task == "sam" else "whole model",
        "machine": machine_facts(settings.threads) | ({"gpu": torch.cuda.get_device_name()} if on_gpu else {}),
        "settings": asdict(settings) | {"order": "interleaved rounds: one call per backend per round"
                                                  + ("; torch.compile timed after its compilation (compile_s)"
                                                     if "compile" in settings.baselines else ""),
                                         "input": "random normal tensor (latency does not depend on values)",
                                         "weights": weights and Path(weights).name or "random"},
        "versions": versions(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "results": results,
        "skipped": skipped,
        "reference": {"model": model_facts(card.name), "hardware": hardware_rows(card.name)},
    }


def bench_model(model: str, target: str, settings: BenchSettings, weights: str | None = None,
                imgsz: tuple[int, ...] | None = None, export_dir: str | None = None,
                step: Callable | None = None, progress: ProgressFactory = no_progress,
                ema: bool = False) -> dict[str, Any]:
    """Export ``model`` for ``target`` (validated as usual), then benchmark the export."""
    card = get_card(model)
    request = ExportRequest(model, target, weights, imgsz, None, None,
                            export_dir or str(Path("exports") / f"{card.name}-{Path(target).stem}"), ema=ema)
    result = run_export(request, step) if step else run_export(request)
    return bench_export(result.folder, settings, weights, progress, result.model)


def speedups(report: dict[str, Any]) -> list[tuple[str, int, float]]:
    """(artifact, batch, PyTorch median / artifact median) for every measured artifact."""
    return [(r["artifact"], r["batch"], 1 / r["ratio_to_pytorch"]) for r in report["results"]
            if r["artifact"] and r["ratio_to_pytorch"]]


def parse_batches(text: str) -> list[int]:
    try:
        batches = sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        raise EvitError(f"--batch takes comma-separated integers like 1,4,16; got '{text}'") from None
    if not batches or batches[0] < 1:
        raise EvitError(f"--batch needs positive integers; got '{text}'")
    return batches

