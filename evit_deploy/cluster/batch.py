"""``evit-deploy predict --engine ray``: batch prediction as a Ray Data job.

Ray Data reads the image files (``read_binary_files``: local paths, or any filesystem Ray Data reads where it has
one, e.g. ``s3://``), a pool of actors runs :class:`PredictBatch` with ``map_batches`` (one Predictor loaded per
actor, the resources of :func:`~evit_deploy.cluster.settings.worker_resources` each), and this process writes
every finished image with the same code as the local engine (:mod:`evit_deploy.predict.jobs`), so both engines
write the same files. Images whose outputs are complete in the output folder are not read again (resume).
Needs the ``[ray]`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EvitError, NonFiniteOutput
from ..images import ImageError, open_image
from ..predict.inputs import is_uri
from ..predict.jobs import OutputFolder, PredictorSpec, Rendered, outputs, render, summary
from ..signing import resolve_trust
from .session import check_fits, cluster_cpus, connected, failure_reason
from .settings import RaySettings, ray_settings_with, worker_resources

_COLUMNS = ("path", "error", "model", "result", "label_map_png", "overlay_png")


class PredictBatch:
    """A Ray Data callable class: one Predictor per actor; rows ``path``, ``bytes`` → one result row each
    (``error`` set instead for an image that cannot be read)."""

    def __init__(self, spec: PredictorSpec, options: dict[str, Any], max_pixels: int) -> None:
        import torch

        torch.set_num_threads(max(1, spec.threads or 1))  # pre/post-processing within the actor's CPUs
        self.predictor = spec.load()
        self.options = options
        self.max_pixels = max_pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import json

        p = self.predictor
        rows: list[dict[str, Any]] = []
        ready = []  # (row, image, prepared)
        for path, data in zip(batch["path"], batch["bytes"]):
            row = {"path": str(path), "error": "", "model": p.model, "result": "", "label_map_png": b"",
                   "overlay_png": b""}
            rows.append(row)
            try:
                image = open_image(bytes(data), self.max_pixels, name=str(path))
                ready.append((row, image, p.prepare(image, **self.options)))
            except ImageError as exc:
                row["error"] = str(exc)
        for (row, image, item), raw in zip(ready, p.infer([item for _, _, item in ready])):
            try:
                done = render(p.model, p.finish(item, raw), image)
            except NonFiniteOutput as exc:
                row["error"] = f"{row['path']}: {exc}"
                continue
            row.update(result=json.dumps(done.result), label_map_png=done.label_map_png or b"",
                       overlay_png=done.overlay_png or b"")
        return {c: np.array([r[c] for r in rows], dtype=object) for c in _COLUMNS}


@dataclass
class JobOutcome:
    """Records by input index (new and resumed), the images that could not be read, and how many were resumed."""

    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    resumed: int = 0


def _read_path(path: str) -> str:
    """The path Ray Data is given: URIs as they are, local paths absolute (its readers run in other processes)."""
    return path if is_uri(path) else os.path.abspath(path)


def predict_on_ray(spec: PredictorSpec, images: list[str], stems: list[str], out: OutputFolder,
                   options: dict[str, Any], batch: int, max_pixels: int, strict: bool,
                   settings: RaySettings | None = None, echo: Callable[[str], None] = print,
                   warn: Callable[[str], None] = print) -> JobOutcome:
    """Predict on ``images`` (written as ``stems``) with a Ray Data job; images done in ``out`` are skipped.

    Each finished image is written at once; ``strict`` stops at the first unreadable image (``ImageError``).
    """
    rs = ray_settings_with(settings)
    manifest = spec.manifest()  # a bad export or model name fails before any cluster starts
    outcome = JobOutcome()
    todo: dict[str, list[int]] = {}  # path given to Ray → input indices (an image listed twice is read once)
    for i, (image, stem) in enumerate(zip(images, stems)):
        if (record := out.done(image, stem)) is not None:
            outcome.records[i] = record
        else:
            todo.setdefault(_read_path(image), []).append(i)
    outcome.resumed = len(outcome.records)
    if outcome.resumed:
        warn(f"resuming: {outcome.resumed} of {len(images)} images already have their outputs in {out.path}/")
    if not todo:
        return outcome
    with connected(rs, "predict --engine ray") as owned:
        import ray

        res = worker_resources(manifest, spec.threads, rs)
        if owned:
            check_fits("actor", rs.concurrency or 1, res, "--concurrency")
        trust = resolve_trust(spec.require_signature)  # actors check it too, wherever they run
        spec = PredictorSpec(os.path.abspath(spec.source) if os.path.exists(spec.source) else spec.source,
                             spec.weights and os.path.abspath(spec.weights), spec.ema, res.threads,
                             str(trust.path) if trust else None)
        if rs.concurrency:
            pool = ray.data.ActorPoolStrategy(size=rs.concurrency)
        else:  # grows with the backlog up to what the cluster holds
            most = max(1, int(cluster_cpus() // max(res.num_cpus, 1e-3)))
            pool = ray.data.ActorPoolStrategy(min_size=1, max_size=most)
        # reading is I/O: the read tasks reserve no CPU, so actors that hold every CPU cannot starve them
        ds = ray.data.read_binary_files(list(todo), include_paths=True, num_cpus=0)
        ds = ds.map_batches(PredictBatch, fn_constructor_kwargs={"spec": spec, "options": options,
                                                                 "max_pixels": max_pixels},
                            batch_size=batch, batch_format="numpy", compute=pool,
                            num_cpus=res.num_cpus, num_gpus=res.num_gpus or None)
        try:
            for rows in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for n in range(len(rows["path"])):
                    _finish_row({c: rows[c][n] for c in _COLUMNS}, todo, images, stems, out, outcome, strict,
                                echo, warn)
        except ray.exceptions.RayError as exc:
            raise EvitError(f"the Ray Data job failed: {failure_reason(str(exc))}") from None
    return outcome


def _finish_row(row: dict[str, Any], todo: dict[str, list[int]], images: list[str], stems: list[str],
                out: OutputFolder, outcome: JobOutcome, strict: bool, echo: Callable[[str], None],
                warn: Callable[[str], None]) -> None:
    import json

    path = str(row["path"])
    indices = todo.get(path) or next((v for k, v in todo.items() if is_uri(k) and k.endswith("://" + path)), [])
    for i in indices:
        if row["error"]:
            message = str(row["error"]).replace(path, images[i])
            if strict:
                raise ImageError(message)
            outcome.failed.append(message)
            warn(f"skipped: {message}")
            continue
        rendered = Rendered(str(row["model"]), json.loads(row["result"]), bytes(row["label_map_png"]) or None,
                            bytes(row["overlay_png"]) or None)
        record, files = outputs(images[i], stems[i], rendered)
        out.write(record, files)
        outcome.records[i] = record
        echo(f"{images[i]}: {summary(record)}")
