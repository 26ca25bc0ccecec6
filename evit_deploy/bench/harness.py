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
from ..artifacts import FORMATS, ArtifactEntry, Manifest, check_name, read_manifest
from ..errors import EvitError, one_line
from ..export.pipeline import ExportRequest, run_export, versions
from ..export.subjects import ExportSubject, zoo_subject
from ..zoo import RandomWeightsWarning, get_card
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


@dataclass
class BenchItem:
    """One export in a measurement run: its PyTorch graph (timed beside the artifacts) and its runnable artifacts.
    ``fields`` are added to every result row of the item (e.g. ``role``)."""

    model: str
    folder: Path
    manifest: Manifest
    graph: torch.nn.Module
    backends: list[tuple[ArtifactEntry, runtime.Backend]]
    fields: dict[str, Any] = field(default_factory=dict)
    on_gpu: bool = False
    measured: str = "whole model"  # what the PyTorch graph and the artifacts compute (SAM: the image encoder)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.manifest.input_size


def open_item(folder: str | Path, settings: BenchSettings, subject: ExportSubject | None = None,
              weights: str | None = None, model: torch.nn.Module | None = None, name: str | None = None,
              fields: dict[str, Any] | None = None) -> BenchItem:
    """An export folder ready to measure: its artifacts opened (each hash-checked) and its PyTorch graph built.

    ``subject``: what the export was made from (default: the zoo model its manifest names, with ``weights``);
    ``model``: the subject's PyTorch module when the caller already has it; ``name``: the model name of its result
    rows (default: the subject's); ``fields``: added to each of its rows.
    """
    folder = Path(folder)
    manifest = read_manifest(folder, verify=False)  # each artifact is hash-checked as it is opened below
    b = manifest.batch
    limit = b.max if b.dynamic else max(b.size, MAX_PYTORCH_BATCH)  # static: other batches run PyTorch only
    too_big = [batch for batch in settings.batches if batch > limit]
    if too_big:
        raise EvitError(f"{folder} is benchmarked at batches up to {limit}; got --batch {too_big[0]}")
    torch.set_num_threads(settings.threads)
    if subject is None:
        recorded = manifest.weights.get("file")
        if weights is None and recorded:  # a checkpoint the user put beside the artifacts
            weights = str(folder / check_name(recorded, "weights file")) if (folder / recorded).is_file() else None
        subject = zoo_subject(get_card(manifest.model), weights, bool(manifest.weights.get("ema")))
    if model is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)  # said at export time; the report records it
            model = subject.build(manifest.input_size)
    graph = subject.bench_graph(model)
    on_gpu = torch.cuda.is_available() and any(FORMATS[a.format].gpu for a in manifest.artifacts)
    if on_gpu:  # compare GPU engines with PyTorch on the same GPU, input and output copies included
        graph = graph.cuda()
    backends = []
    for a in [a for a in manifest.artifacts if a.role in BENCH_ROLES and a.runnable]:
        try:
            backends.append((a, runtime.open_artifact(folder, manifest, a, settings.threads, shared_cpu=True)))
        except EvitError as exc:
            raise type(exc)(f"cannot benchmark {a.path}: {exc}") from None
    return BenchItem(name or subject.name, folder, manifest, graph, backends, dict(fields or {}), on_gpu,
                     subject.measured)


def measure_items(items: list[BenchItem], settings: BenchSettings, progress: ProgressFactory = no_progress
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """Measure every item's PyTorch graph and artifacts at each batch, all interleaved in the same rounds (one call
    of each per round, same threads; each item at its own export's input size). Returns (result rows, skipped)."""
    torch.set_num_threads(settings.threads)
    results, skipped = [], []
    for batch in settings.batches:
        contenders, meta, base = [], {}, {}
        for item in items:
            h, w = item.input_size
            x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(batch))
            x_np = x.numpy()

            def call_with(module: torch.nn.Module, x: torch.Tensor = x, gpu: bool = item.on_gpu) -> object:
                return module(x.cuda()).cpu() if gpu else module(x)

            key = f"{item.model}:pytorch"
            contenders.append(Contender(key, lambda g=item.graph, c=call_with: c(g)))
            meta[key] = (item, {"backend": "pytorch", "format": "pytorch-eager", "artifact": None, "precision": "fp32"})
            if "compile" in settings.baselines:
                named = f"{item.model + ': ' if len(items) > 1 else ''}pytorch-compile at batch {batch}"
                try:
                    with progress(f"batch {batch}: torch.compile (inductor) of {item.model}, not timed", 1) as tick:
                        compiled_call, compile_s = compiled_baseline(item.graph, call_with)
                        tick()
                except Exception as exc:  # noqa: BLE001 - inductor needs a C++ compiler; the other rows still run
                    skipped.append(f"{named}: torch.compile failed ({one_line(exc, 160)})")
                else:
                    key = f"{item.model}:pytorch-compile"
                    contenders.append(Contender(key, compiled_call))
                    meta[key] = (item, {"backend": "pytorch", "format": "pytorch-compile", "artifact": None,
                                        "precision": "fp32", "compile_s": round(compile_s, 2),
                                        "runtime": {"compiler": "torch.compile(backend='inductor', dynamic=False)",
                                                    "compile_s": round(compile_s, 2)}})
            for a, backend in item.backends:
                if not _batch_ok(backend, batch):
                    skipped.append(f"{item.model + ': ' if len(items) > 1 else ''}{a.path} at batch {batch}: static "
                                   f"batch {backend.inputs[0].shape[0]}")
                    continue
                key = f"{item.model}:{a.path}"
                feeds = {backend.inputs[0].name: x_np}
                contenders.append(Contender(key, lambda b=backend, f=feeds: b.run(f)))
                meta[key] = (item, {"backend": backend.name, "format": a.format, "artifact": a.path,
                                    "precision": a.precision, "runtime": backend.facts})
        label = f"batch {batch}: {len(contenders)} backends" + (f" of {len(items)} models" if len(items) > 1 else "")
        with torch.inference_mode(), progress(label, settings.runs) as tick:
            interleaved(contenders, settings.runs, settings.warmup, tick)
        for c in contenders:
            item, row = meta[c.key]
            stats = summarize(c.times_ms, batch)
            if row["format"] == "pytorch-eager":
                base[item.model] = stats["median"]
            ratio = stats["median"] / base[item.model] if base.get(item.model) else None
            results.append({"model": item.model, **item.fields, **row, "batch": batch,
                            "latency_ms": {k: v for k, v in stats.items() if k != "throughput_img_s"},
                            "throughput_img_s": stats["throughput_img_s"],
                            "rss_growth_mb": round(c.rss_growth_mb, 1),
                            "pytorch_device": "cuda" if item.on_gpu else "cpu",
                            "ratio_to_pytorch": ratio,
                            "host_device_copies": "included" if item.on_gpu else "n/a: CPU backends read host memory",
                            "device": f"this machine ({torch.cuda.get_device_name() if item.on_gpu else 'cpu'})"})
    return results, skipped


def run_facts(settings: BenchSettings, items: list[BenchItem], weights: str | None = None) -> dict[str, Any]:
    """The report fields every benchmark report shares: time, machine, settings, versions, memory."""
    gpu = any(item.on_gpu for item in items)
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(settings.threads) | ({"gpu": torch.cuda.get_device_name()} if gpu else {}),
        "settings": asdict(settings) | {"order": "interleaved rounds: one call per backend per round"
                                                  + ("; torch.compile timed after its compilation (compile_s)"
                                                     if "compile" in settings.baselines else ""),
                                         "input": "random normal tensor (latency does not depend on values)",
                                         "weights": weights and Path(weights).name or "random"},
        "versions": versions(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def bench_export(folder: str | Path, settings: BenchSettings, weights: str | None = None,
                 progress: ProgressFactory = no_progress, model: torch.nn.Module | None = None,
                 subject: ExportSubject | None = None) -> dict[str, Any]:
    """Measure PyTorch eager and each runnable artifact of an export folder at each batch size.

    ``model``: the PyTorch model of the export when the caller already has it (else built from ``weights``);
    ``subject``: what the export was made from when it is not a zoo model (a competitor of the paper).
    """
    item = open_item(folder, settings, subject, weights, model)
    results, skipped = measure_items([item], settings, progress)
    manifest = item.manifest
    facts = run_facts(settings, [item], weights)
    return {
        "created": facts.pop("created"),
        "model": item.model,
        "task": manifest.task,
        "target": manifest.target,
        "export": str(item.folder),
        "input_size": list(manifest.input_size),
        "measured": item.measured,
        **facts,
        "results": results,
        "skipped": skipped,
        "reference": {"model": model_facts(item.model), "hardware": hardware_rows(item.model)},
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

