"""``evit-deploy predict``, ``evit-deploy serve`` and ``evit-deploy triton``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import EvitError
from ..files import atomic_write, writing
from ..images import IMAGE_SUFFIXES, ImageError, is_image_file
from ..limits import LIMITS
from ..serve.settings import LOG_LEVELS, SERVE_DEFAULTS, ServeSettings

INDEX = "predictions.json"
OUTPUT_SUFFIXES = (".json", ".png", ".labels.png")  # per image: result, overlay, segmentation label map


def _numbers(text: str, what: str, counts: tuple[int, ...]) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"'{text}' is not comma-separated numbers", param_hint=what) from None
    if len(values) not in counts:
        raise click.BadParameter(f"'{text}' needs {' or '.join(map(str, counts))} numbers", param_hint=what)
    return values


def parse_points(values: tuple[str, ...]) -> tuple[list[list[float]], list[int]]:
    """``("x,y", "x,y,label", "x,y x,y")`` → points and labels (label 1 = foreground unless given)."""
    points, labels = [], []
    for value in values:
        for item in value.replace(";", " ").split():
            nums = _numbers(item, "--points", (2, 3))
            if len(nums) == 3 and nums[2] not in (0, 1):
                raise click.BadParameter(f"'{item}': the label must be 1 (foreground) or 0 (background)",
                                         param_hint="--points")
            points.append(nums[:2])
            labels.append(int(nums[2]) if len(nums) == 3 else 1)
    return points, labels


def collect_images(paths: tuple[str, ...]) -> list[Path]:
    """Files as given; folders expand to the image files directly inside them (sorted)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if is_image_file(f) and f.is_file())
        elif p.is_file():
            found.append(p)
        else:
            raise EvitError(f"image not found: {p}")
    if not found:
        raise EvitError("no images to predict on (folders are searched for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
    return found


def _previous_outputs(out: Path) -> set[str]:
    """Files a previous ``predict`` wrote into ``out`` (from its predictions.json), which may be overwritten."""
    try:
        records = json.loads((out / INDEX).read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(records, list):
        return set()
    names = {INDEX}
    for r in records:
        if isinstance(r, dict):
            names |= {v for k in ("result_file", "overlay", "label_map") if isinstance(v := r.get(k), str)}
    return names


def check_outputs(out: Path, stems: list[str]) -> None:
    """Refuse to overwrite files in ``out`` that a previous ``predict`` did not write (e.g. the input photos)."""
    if not out.is_dir():
        return
    ours = _previous_outputs(out)
    for name in [INDEX, *(f"{stem}{suffix}" for stem in stems for suffix in OUTPUT_SUFFIXES)]:
        if (out / name).exists() and name not in ours:
            raise EvitError(f"refusing to overwrite {out / name}: it was not written by evit-deploy predict; "
                            "choose another --output folder")


def _unique_stems(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        stems.append(p.stem if n == 1 else f"{p.stem}-{n}")
    return stems


def _summary(result: Any) -> str:
    d = result.to_dict(include_label_map=False)
    if d["task"] == "cls":
        return ", ".join(f"{t['label']} ({t['score']:.3f})" for t in d["top_k"][:3])
    if d["task"] == "seg":
        return ", ".join(f"{c['label']} {100 * c['fraction']:.1f}%" for c in d["classes"][:3])
    best = d["masks"][d["best"]]
    return f"best mask {d['best']}: score {best['score']:.3f}, {best['area']} px"


@click.command()
@click.argument("export_dir")
@click.argument("images", nargs=-1, required=True)
@click.option("--output", "-o", default="predictions", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the JSON results and overlay PNGs.")
@click.option("--points", multiple=True, metavar="X,Y[,LABEL]",
              help="SAM point prompt in image pixels (label 1 foreground, default; 0 background). Repeatable.")
@click.option("--box", metavar="X0,Y0,X1,Y1", help="SAM box prompt in image pixels.")
@click.option("--single-mask", is_flag=True, help="SAM: return the single-mask output instead of three masks.")
@click.option("--top-k", type=click.IntRange(min=1), help="Classification: classes per image (default 5).")
@click.option("--batch", type=click.IntRange(1, LIMITS.max_batch), default=8, show_default=True,
              help="Images per model run.")
@click.option("--weights", "-w", type=click.Path(dir_okay=False),
              help="Run the PyTorch zoo model EXPORT_DIR names (a model name) with this checkpoint.")
@click.option("--ema", is_flag=True, help="With --weights: load the checkpoint's EMA weights.")
@click.option("--threads", type=click.IntRange(min=0), help="Runtime threads (default: the export profile's).")
@click.option("--max-pixels", default=LIMITS.max_image_pixels, show_default=True, type=click.IntRange(min=1),
              help="Largest image (width x height) decoded; larger files are skipped as unreadable.")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of skipping it.")
def predict(export_dir: str, images: tuple[str, ...], output: str, points: tuple[str, ...], box: str | None,
            single_mask: bool, top_k: int | None, batch: int, weights: str | None, ema: bool, threads: int | None,
            max_pixels: int, strict: bool) -> None:
    """Predict on IMAGES (files or folders) with an export folder (or a zoo model name with --weights).

    Writes <image>.json per image, overlay PNGs (segmentation colours / SAM masks over the photo), a
    segmentation label map <image>.labels.png (pixel value = class id) and predictions.json with all results.
    Unreadable images are skipped with a warning (exit status 2 at the end); --strict stops at the first.
    """
    from PIL import Image
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..images import load_rgb
    from ..predict import Predictor
    from ..zoo.cards import all_cards

    if Path(export_dir).exists():
        predictor = Predictor.from_export(export_dir, threads=threads)
    elif export_dir in all_cards():
        predictor = Predictor.from_model(export_dir, weights, ema=ema)
    else:
        raise EvitError(f"{export_dir} is neither an export folder/artifact nor a zoo model name")
    options: dict[str, Any] = {}
    pts, labels = parse_points(points)
    if pts:
        options.update(points=pts, point_labels=labels)
    if box is not None:
        options["box"] = _numbers(box, "--box", (4,))
    if single_mask:
        options["multimask"] = False
    if top_k is not None:
        options["top_k"] = top_k
    paths = collect_images(images)
    stems = _unique_stems(paths)
    out = Path(output)
    check_outputs(out, stems)

    everything, failed = [], []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), disable=len(paths) < 2)
    with progress, writing(f"write predictions to {out}"):
        task = progress.add_task(f"{predictor.model}", total=len(paths))
        for start in range(0, len(paths), batch):
            chunk, rgbs, prepared = [], [], []
            for path, stem in zip(paths[start : start + batch], stems[start : start + batch]):
                try:
                    img = load_rgb(path, max_pixels)
                    item = predictor.prepare(img, **options)
                except ImageError as exc:
                    if strict:
                        raise
                    failed.append(str(exc))
                    click.secho(f"warning: skipped: {exc}", fg="yellow", err=True)
                    progress.advance(task)
                    continue
                chunk.append((path, stem))
                rgbs.append(img)
                prepared.append(item)
            if chunk:
                out.mkdir(parents=True, exist_ok=True)
            for (path, stem), img, item, raw in zip(chunk, rgbs, prepared, predictor.infer(prepared)):
                result = predictor.finish(item, raw)
                record = {"image": str(path), "model": predictor.model,
                          **result.to_dict(include_label_map=False), "result_file": f"{stem}.json"}
                if record["task"] == "seg":
                    Image.fromarray(result.label_map).save(out / f"{stem}.labels.png")
                    record["label_map"] = f"{stem}.labels.png"
                overlay = result.overlay(img)
                if overlay is not None:
                    overlay.save(out / f"{stem}.png")
                    record["overlay"] = f"{stem}.png"
                atomic_write(out / f"{stem}.json", json.dumps(record) + "\n")
                everything.append(record)
                click.echo(f"{path}: {_summary(result)}")
                progress.advance(task)
        if everything:
            atomic_write(out / INDEX, json.dumps(everything) + "\n")
    if not everything:
        raise EvitError(f"no image could be read ({failed[0]})")
    click.echo(f"wrote {len(everything)} result(s) to {out}/", err=True)
    if failed:
        raise EvitError(f"{len(failed)} of {len(paths)} images could not be read (first: {failed[0]}); "
                        f"the other results are in {out}/")


@click.command()
@click.argument("export_dir", type=click.Path(exists=True))
@click.option("--host", default=SERVE_DEFAULTS.host, show_default=True,
              help="Address to bind (0.0.0.0 = all interfaces).")
@click.option("--port", default=SERVE_DEFAULTS.port, show_default=True, type=click.IntRange(0, 65535),
              help="0 = any free port.")
@click.option("--max-batch", default=SERVE_DEFAULTS.max_batch, show_default=True, type=click.IntRange(min=1),
              help="Most requests batched into one model run (1 = no dynamic batching).")
@click.option("--max-wait-ms", default=SERVE_DEFAULTS.max_wait_ms, show_default=True, type=click.FloatRange(min=0),
              help="How long the first request of a batch waits for more.")
@click.option("--max-bytes", default=SERVE_DEFAULTS.max_bytes, show_default=True, type=click.IntRange(min=1),
              help="Largest request body accepted (413 above).")
@click.option("--max-pixels", default=SERVE_DEFAULTS.max_pixels, show_default=True, type=click.IntRange(min=1),
              help="Largest decoded image (width x height) accepted (413 above).")
@click.option("--threads", default=SERVE_DEFAULTS.threads, type=click.IntRange(min=0),
              help="Runtime threads (default: the export profile's).")
@click.option("--graceful-timeout", default=SERVE_DEFAULTS.graceful_timeout, show_default=True,
              type=click.IntRange(min=0),
              help="Seconds in-flight requests get to finish on SIGTERM/SIGINT.")
@click.option("--log-level", default=SERVE_DEFAULTS.log_level, show_default=True, type=click.Choice(LOG_LEVELS))
@click.option("--access-log", is_flag=True, default=SERVE_DEFAULTS.access_log, help="Log every request.")
def serve(export_dir: str, **settings: Any) -> None:
    """Serve EXPORT_DIR over HTTP: POST /v1/predict, GET /health, /ready, /metrics, /docs.

    Concurrent requests are batched dynamically; SIGTERM drains in-flight requests before exiting.
    """
    from ..optional import require

    require("fastapi", "serving")  # one line naming the [serve] extra when it is missing
    from ..serve.runner import serve as run_server

    run_server(export_dir, ServeSettings(**settings))


@click.command()
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--repo", required=True, type=click.Path(file_okay=False), help="Model repository folder.")
@click.option("--name", help="Name of the pipeline model (default: the model's name).")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(min=1),
              help="Instances per model (instance_group count).")
@click.option("--kind", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "gpu"]),
              help="Instance kind; auto = GPU for TensorRT plans or CUDA/TensorRT providers.")
@click.option("--platform", default="auto", show_default=True,
              type=click.Choice(["auto", "onnxruntime_onnx", "tensorrt_plan"]), help="Graph platform.")
@click.option("--max-queue-delay-us", default=5000, show_default=True, type=click.IntRange(min=0),
              help="Dynamic batching: longest wait for a fuller batch.")
@click.option("--force", is_flag=True,
              help="Replace models of the same name that an earlier `evit-deploy triton` wrote (never others).")
def triton(export_dir: str, repo: str, name: str | None, instances: int, kind: str, platform: str,
           max_queue_delay_us: int, force: bool) -> None:
    """Write a Triton Inference Server model repository for EXPORT_DIR (graph models + a pipeline model)."""
    from rich.console import Console
    from rich.table import Table

    from ..triton import write_repository

    models = write_repository(export_dir, repo, name, instances, kind, platform, max_queue_delay_us, force)
    table = Table(title=f"Triton models in {repo}")
    for col in ("model", "platform", "max_batch_size", "dynamic batching"):
        table.add_column(col)
    for m in models:
        table.add_row(m.name, m.platform, str(m.config["max_batch_size"]),
                      "yes" if "dynamic_batching" in m.config else "no")
    Console().print(table)
    click.echo(f"run: tritonserver --model-repository={repo}  (details: {models[0].folder / 'README.md'})")
