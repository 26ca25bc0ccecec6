"""``evaluate``: PyTorch and every runnable artifact of an export on the same images, in one pass.

Images are decoded and pre-processed by a thread pool a few batches ahead of the model runs, so evaluation is
not dominated by its own I/O. Each backend's ``images_per_s`` counts the time in its model runs only; the
report also gives the wall-clock rate of the whole pass.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..artifacts import ArtifactEntry, Manifest, is_export_folder, read_manifest
from ..errors import EvitError, NonFiniteOutput
from ..host import torch_threads
from ..limits import LIMITS
from ..metrics import non_finite_count
from ..predict.engine_base import Engine
from ..predict.engines import ExportEngine, TorchEngine
from ..signing import resolve_trust
from ..tasks import task_spec
from ..zoo.cards import ModelCard, get_card
from .datasets import Dataset, Sample, open_dataset
from .protocols import Item, Protocol, Tally

PUBLISHED_KEYS = {"imagenet": ("top1", "top5"), "cityscapes": ("miou",), "ade20k": ("miou",),
                  "coco": ("coco_box_miou", "coco_box_miou_small", "coco_box_miou_medium", "coco_box_miou_large")}
Progress = Callable[[str, int], Any]  # (label, total) → context manager yielding an advance(n) callable


@dataclass
class EvalSettings:
    data: str
    dataset: str | None = None  # imagenet | cityscapes | ade20k | coco; None = detected from the layout
    labels: str | None = None  # flat ImageNet folder: lines "filename,class_index"
    weights: str | None = None
    ema: bool = False
    limit: int | None = None  # the first N images (sorted)
    batch: int = 1
    threads: int | None = None  # runtime threads (default: the export's); PyTorch uses the same
    workers: int = 2  # decoding / pre-processing threads
    pytorch: bool = True  # evaluate the PyTorch model beside the artifacts
    # the export must be signed by this public key / CA certificate file (None: EVIT_DEPLOY_REQUIRE_SIGNATURE;
    # False: not required, e.g. the export's own accuracy gate on the folder it is writing)
    require_signature: str | bool | None = None


@dataclass
class Row:
    """One backend under evaluation."""

    backend: str
    format: str
    precision: str
    artifact: str | None
    engine: Engine
    fixed_size: tuple[int, int] | None  # None: takes the protocol's size of every image
    deviations: list[str] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    seconds: float = 0.0  # in the model runs
    scoring_seconds: float = 0.0  # in the metric (e.g. logits resized to the label size)
    batch_ms: list[float] = field(default_factory=list)  # each model call (one batch of images)


def _no_progress(label: str, total: int) -> Any:
    import contextlib

    return contextlib.nullcontext(lambda n=1: None)


def _spatial_fixed(entry: ArtifactEntry) -> tuple[int, int] | None:
    """The artifact's fixed input (H, W), or None when both are symbolic (dynamic spatial shapes)."""
    shape = entry.inputs[0].shape
    h, w = shape[-2], shape[-1]
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def _artifact_rows(folder: Path, manifest: Manifest, protocol: Protocol, threads: int | None,
                   skipped: list[str]) -> list[Row]:
    rows = []
    for entry in manifest.artifacts:
        if entry.role != protocol.graph.role or not entry.runnable:
            continue
        try:
            # shared_cpu: decoding threads and the other backends share the cores; idle runtime threads must not spin
            engine = ExportEngine(folder, manifest, folder / entry.path, threads, shared_cpu=True)
        except EvitError as exc:
            skipped.append(f"{entry.path}: {exc}")
            continue
        fixed = _spatial_fixed(entry)
        deviations = []
        if protocol.dynamic_sizes and fixed is not None:
            deviations.append(f"protocol deviation: fixed input size {fixed[0]}x{fixed[1]} (the protocol sizes "
                              "each image; export with dynamic_hw: true to follow it)")
        backend = next(iter(engine.backends.values())).name
        rows.append(Row(backend, entry.format, entry.precision, entry.path, engine,
                        fixed if protocol.dynamic_sizes else None, deviations))
    return rows


def _protocol(card: ModelCard, dataset: Dataset, input_size: tuple[int, int]) -> Protocol:
    """The official protocol of the card's task on ``dataset``; a one-line error for a dataset it does not read."""
    spec = task_spec(card.task)
    protocol = spec.protocol
    if protocol is None:
        raise EvitError(f"{card.name}: {spec.title} models have no official evaluation protocol here")
    kinds = protocol.datasets
    if dataset.kind not in kinds or (protocol.dataset_per_model and dataset.kind != card.dataset):
        wanted = card.dataset if protocol.dataset_per_model else " or ".join(kinds)
        raise EvitError(f"{card.name} ({card.task}, {card.dataset}) is evaluated on {wanted}; {dataset.describe()} "
                        "is another dataset")
    return protocol(card, dataset, input_size)


def _batches(samples: list[Sample], size: int) -> Iterator[list[Sample]]:
    for start in range(0, len(samples), size):
        yield samples[start : start + size]


def _prepared(protocol: Protocol, samples: list[Sample], sizes: list[tuple[int, int] | None], batch: int,
              workers: int) -> Iterator[dict[Any, list[Item]]]:
    """Batches of prepared items per input size, decoded by ``workers`` threads a few batches ahead."""

    def prepare(chunk: list[Sample]) -> dict[Any, list[Item]]:
        return {size: [protocol.prepare(s, size) for s in chunk] for size in sizes}

    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending = []
        for chunk in _batches(samples, batch):
            pending.append(pool.submit(prepare, chunk))
            if len(pending) > workers + 1:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def evaluate(target: str | Path, settings: EvalSettings, progress: Progress = _no_progress) -> dict[str, Any]:
    """Evaluate an export folder (each runnable artifact, and PyTorch) or a zoo model (PyTorch) on a dataset;
    returns the report (the layout of ``eval.json``)."""
    if settings.batch < 1 or settings.batch > LIMITS.max_batch:
        raise EvitError(f"--batch must be 1..{LIMITS.max_batch}, got {settings.batch}")
    if settings.limit is not None and settings.limit < 1:
        raise EvitError(f"--limit must be >= 1, got {settings.limit}")
    folder = Path(target) if is_export_folder(target) else None
    manifest = read_manifest(folder, verify=False, require_signature=settings.require_signature) if folder else None
    trust = resolve_trust(settings.require_signature) if folder is None else None
    if trust is not None:
        raise EvitError(f"a signed export is required ({trust.description}); {target} is not an export folder")
    card = get_card(manifest.model if manifest else str(target))
    dataset = open_dataset(settings.data, settings.dataset, settings.labels)
    input_size = tuple(manifest.input_size) if manifest else tuple(card.input_size)
    protocol = _protocol(card, dataset, input_size)
    threads = settings.threads if settings.threads is not None else (manifest.runtime.threads if manifest else None)

    skipped: list[str] = []
    rows = _artifact_rows(folder, manifest, protocol, threads, skipped) if manifest else []
    if settings.pytorch:
        rows.insert(0, _pytorch_row(card, settings, manifest))
    if not rows:
        raise EvitError(f"nothing to evaluate in {target}: " + "; ".join(skipped or ["no runnable artifact"]))

    samples = dataset.samples[: settings.limit] if settings.limit else dataset.samples
    started = time.perf_counter()
    with progress(f"{card.name} on {dataset.kind}: {len(rows)} backend(s)", len(samples)) as advance, \
            torch_threads(threads if settings.pytorch else None):
        run_rows(protocol, samples, rows, settings, advance)
    wall = time.perf_counter() - started
    return _report(card, dataset, settings, protocol, rows, skipped, len(samples), wall, folder, manifest)


def run_rows(protocol: Protocol, samples: list[Sample], rows: list[Row], settings: EvalSettings,
             advance: Callable[[int], None] = lambda n: None) -> None:
    """Every row on every sample, batch by batch; each row's scored output is compared with the first row's."""
    sizes = sorted({row.fixed_size for row in rows}, key=lambda s: (s is not None, s))
    for prepared in _prepared(protocol, samples, sizes, settings.batch, settings.workers):
        reference: list[Any] | None = None
        for row in rows:
            items = prepared[row.fixed_size]
            tic = time.perf_counter()
            raws = protocol.run(row.engine, items)
            toc = time.perf_counter()
            for item, raw in zip(items, raws):
                if non_finite_count(raw):
                    raise NonFiniteOutput(f"{row.artifact or row.backend} gave a non-finite output (NaN/Inf) for "
                                          f"{item.sample.image}; no result for it, evaluation stopped")
            scored = [protocol.score(row.tally, item, raw, None if reference is None else reference[i])
                      for i, (item, raw) in enumerate(zip(items, raws))]
            row.seconds += toc - tic
            row.batch_ms.append((toc - tic) * 1e3)
            row.scoring_seconds += time.perf_counter() - toc
            reference = scored if reference is None else reference
        advance(len(next(iter(prepared.values()))))


def candidate_drop(model: str, input_size: tuple[int, int], settings: EvalSettings) -> Callable[[Path], float]:
    """For the int8 fallback: points of the primary metric a candidate ONNX (the image graph of an export of
    ``model`` at ``input_size``, a task whose protocol runs that one graph) loses against PyTorch on the dataset;
    PyTorch is evaluated once."""
    from .. import runtime
    from ..predict.engines import ArtifactEngine

    card = get_card(model)
    dataset = open_dataset(settings.data, settings.dataset, settings.labels)
    protocol = _protocol(card, dataset, input_size)
    samples = dataset.samples[: settings.limit] if settings.limit else dataset.samples
    baseline: list[float] = []

    def drop(candidate: Path) -> float:
        if not baseline:
            row = _pytorch_row(card, settings, None)
            with torch_threads(settings.threads):
                run_rows(protocol, samples, [row], settings)
            baseline.append(protocol.metrics(row.tally)[protocol.primary])
        engine = ArtifactEngine({protocol.graph.role: runtime.open_file(candidate, settings.threads or 0,
                                                                      shared_cpu=True)})
        row = Row("onnxruntime", "onnx", "int8", candidate.name, engine, None)
        run_rows(protocol, samples, [row], settings)
        return baseline[0] - protocol.metrics(row.tally)[protocol.primary]

    return drop


def _pytorch_row(card: ModelCard, settings: EvalSettings, manifest: Manifest | None) -> Row:
    from ..zoo import RandomWeightsWarning, create_model

    weights = settings.weights
    recorded = manifest.weights if manifest else {}
    if weights is None and recorded.get("file"):
        raise EvitError(f"the export was made from {recorded['file']}: pass it with --weights (PyTorch is the "
                        "reference row), or --no-pytorch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)  # the report says "random" in settings
        model = create_model(card.name, weights, ema=settings.ema or bool(recorded.get("ema")))
    return Row("pytorch", "pytorch-eager", "fp32", None, TorchEngine(model, task_spec(card.task)), None)


def _report(card: ModelCard, dataset: Dataset, settings: EvalSettings, protocol: Protocol, rows: list[Row],
            skipped: list[str], images: int, wall: float, folder: Path | None,
            manifest: Manifest | None) -> dict[str, Any]:
    from ..bench.schema import Row as SpeedRow
    from ..bench.stats import summarize
    from ..host import cores, machine_facts

    results = []
    for row in rows:
        reference_row = row is rows[0] and row.backend == "pytorch"
        agreement = None if reference_row or not row.tally.compared else row.tally.agree / row.tally.compared
        results.append({
            "backend": row.backend, "format": row.format, "precision": row.precision, "artifact": row.artifact,
            "metrics": protocol.metrics(row.tally),
            "agreement_with_pytorch": agreement if rows[0].backend == "pytorch" else None,
            "images_per_s": images / row.seconds if row.seconds else None,
            "seconds": {"model": round(row.seconds, 3), "scoring": round(row.scoring_seconds, 3)},
            "protocol_deviations": row.deviations,
            # The same typed row as every benchmark report: ms per model call of `batch` images, decoding excluded.
            "speed": SpeedRow(card.name, row.backend, row.format, row.precision, settings.batch, row.artifact,
                              device="this machine", latency=summarize([row.batch_ms])).to_dict(),
        })
    published = {k: card.published[k] for k in PUBLISHED_KEYS[dataset.kind] if k in card.published}
    return {
        "model": card.name,
        "export": str(folder) if folder else None,
        "target": manifest.target if manifest else None,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {"kind": dataset.kind, "path": str(dataset.root), "images": images, "limit": settings.limit,
                    "available": len(dataset.samples)},
        "protocol": {"task": card.task, "primary_metric": protocol.primary,
                     "input_size": list(protocol.input_size) if not protocol.dynamic_sizes else "per image"},
        "results": results,
        "published": published,
        "settings": {"batch": settings.batch, "workers": settings.workers, "threads": settings.threads,
                     "weights": Path(settings.weights).name if settings.weights else "random"},
        "machine": machine_facts(settings.threads or cores()),
        "wall_seconds": round(wall, 3),
        "images_per_s_wall": images / wall if wall else None,
        "skipped": skipped,
    }


def accuracy_drops(report: dict[str, Any]) -> list[tuple[str, float]]:
    """(artifact, PyTorch metric − artifact metric in points) for every artifact row, on the primary metric."""
    key = report["protocol"]["primary_metric"]
    rows = report["results"]
    base = next((r["metrics"][key] for r in rows if r["backend"] == "pytorch"), None)
    if base is None:
        return []
    return [(r["artifact"], base - r["metrics"][key]) for r in rows if r["artifact"] and r["metrics"][key] is not None]



def accuracy_gate(settings: EvalSettings, max_drop: float | None, step: Any = None) -> Any:
    """A gate for ``run_export``: evaluate the staged export on ``settings.data``, record the accuracy in its
    ``export.json`` (``validation.accuracy``) and refuse the export when an artifact loses more than ``max_drop``
    points of the primary metric against PyTorch (None: record only)."""
    import contextlib

    from ..artifacts import write_manifest

    def gate(folder: Path, manifest: Manifest) -> None:
        with (step or (lambda name: contextlib.nullcontext()))(f"evaluate on {settings.data}"):
            # the folder being written is not signed yet (export --sign signs it after this gate)
            report = evaluate(folder, dataclasses.replace(settings, require_signature=False))
        key = report["protocol"]["primary_metric"]
        drops = accuracy_drops(report)
        manifest.validation["accuracy"] = {
            "dataset": report["dataset"], "metric": key, "max_drop": max_drop,
            "results": [{"artifact": r["artifact"] or "pytorch", key: r["metrics"][key],
                         "agreement_with_pytorch": r["agreement_with_pytorch"]} for r in report["results"]],
        }
        write_manifest(folder, manifest)
        worst = max(drops, key=lambda d: d[1], default=None)
        if max_drop is not None and worst is not None and worst[1] > max_drop:
            raise EvitError(f"{worst[0]} loses {worst[1]:.2f} points of {key} against PyTorch on "
                            f"{report['dataset']['images']} images of {report['dataset']['kind']} (--max-drop "
                            f"{max_drop:g}); nothing was written")

    return gate


def bench_accuracy(report: dict[str, Any]) -> dict[str, Any]:
    """What a benchmark report shows of an evaluation: the primary metric per artifact ("pytorch" for PyTorch)."""
    key = report["protocol"]["primary_metric"]
    return {"metric": key, "dataset": report["dataset"]["kind"], "images": report["dataset"]["images"],
            "by_artifact": {r["artifact"] or "pytorch": r["metrics"][key] for r in report["results"]}}
