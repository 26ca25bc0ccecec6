"""``evit-deploy predict``, ``evit-deploy serve`` and ``evit-deploy triton``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from ..cluster.settings import RAY_DEFAULTS, RaySettings
from ..errors import EvitError, NonFiniteOutput
from ..files import writing
from ..images import ImageError
from ..limits import LIMITS
from ..serve.settings import LOG_LEVELS, SERVE_DEFAULTS, ServeSettings
from ..triton.configs import PLATFORMS
from ..triton.server import ServerSettings as TritonServerSettings
from .options import ema_option, threads_opt, weights_opt
from .sign_cmds import require_signature_option

if TYPE_CHECKING:
    from ..predict.jobs import OutputFolder


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


ENGINES = ("local", "ray")
TRITON_PLATFORMS = ("auto", *PLATFORMS)
TRITON_SERVER = TritonServerSettings()
REPLICAS_HELP = "--engine ray: Serve replicas, a number or 'auto' (autoscaling between --min/--max-replicas)."


def _engine_only(ctx: click.Context, engine: str, names: tuple[str, ...]) -> None:
    """Refuse options of the Ray engine without ``--engine ray`` (one line)."""
    if engine == "ray":
        return
    given = [n for n in names if ctx.get_parameter_source(n) not in (None, ParameterSource.DEFAULT)]
    if given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise click.UsageError(f"{flags} {'needs' if len(given) == 1 else 'need'} --engine ray")


def _replicas(value: str) -> int | None:
    if value.strip().lower() == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"'{value}' is neither a number >= 1 nor 'auto'", param_hint="--replicas")
    return int(value)


def _warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def _predict_here(predictor: Any, paths: list[str], stems: list[str], out: OutputFolder, options: dict[str, Any],
                  batch: int, max_pixels: int, strict: bool) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """The local engine: batches of ``batch`` images through one Predictor in this process; each image written
    as soon as it is done. Returns the records by input index and the messages of unreadable images."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..images import load_rgb
    from ..predict.jobs import outputs, render, summary

    records: dict[int, dict[str, Any]] = {}
    failed: list[str] = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), disable=len(paths) < 2)
    with progress:
        task = progress.add_task(f"{predictor.model}", total=len(paths))
        for start in range(0, len(paths), batch):
            chunk = []
            for i in range(start, min(start + batch, len(paths))):
                try:
                    image = load_rgb(paths[i], max_pixels)
                    chunk.append((i, image, predictor.prepare(image, **options)))
                except ImageError as exc:
                    if strict:
                        raise
                    failed.append(str(exc))
                    _warn(f"skipped: {exc}")
                    progress.advance(task)
            for (i, image, item), raw in zip(chunk, predictor.infer([item for _, _, item in chunk])):
                try:
                    result = predictor.finish(item, raw)
                except NonFiniteOutput as exc:
                    if strict:
                        raise NonFiniteOutput(f"{paths[i]}: {exc}") from None
                    failed.append(f"{paths[i]}: {exc}")
                    _warn(f"failed: {paths[i]}: {exc}")
                    progress.advance(task)
                    continue
                record, files = outputs(paths[i], stems[i], render(predictor.model, result, image))
                out.write(record, files)
                records[i] = record
                click.echo(f"{paths[i]}: {summary(record)}")
                progress.advance(task)
    return records, failed


VIDEO_ONLY = ("source", "max_frames", "duration", "live", "prompts", "timeout", "loop", "no_video")
IMAGES_ONLY = ("batch", "strict", "engine", "concurrency", "address")


def _given(ctx: click.Context, names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` given on the command line, as flags."""
    return ["--" + n.replace("_", "-") for n in names
            if ctx.get_parameter_source(n) not in (None, ParameterSource.DEFAULT)]


def _video_source(images: tuple[str, ...], source: str | None) -> str | None:
    """The video source of this run (``--source``, or a single video/camera/URL input), None for images."""
    from ..video.sources import is_video_source, names_images

    if source is not None:
        if images:
            raise click.UsageError("give IMAGES or --source, not both")
        return None if names_images(source) else source
    streams = [i for i in images if is_video_source(i)]
    if streams and len(images) > 1:
        raise click.UsageError(f"{streams[0]} is a video source: predict on one video source at a time, without "
                               "images")
    return streams[0] if streams else None


@click.command()
@click.argument("export_dir")
@click.argument("images", nargs=-1)
@click.option("--source", metavar="SRC",
              help="Video source: a video file, a camera number or device (0, /dev/video0), or an rtsp://, rtmp://, "
                   "http(s):// URL (images, folders and globs work too). A single video input needs no --source.")
@click.option("--output", "-o", default="predictions", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the JSON results and overlay PNGs; for a video: annotated.mp4, frames.jsonl and "
                   "summary.json (default predictions/<source name>).")
@click.option("--points", multiple=True, metavar="X,Y[,LABEL]",
              help="SAM point prompt in image pixels (label 1 foreground, default; 0 background). Repeatable.")
@click.option("--box", metavar="X0,Y0,X1,Y1", help="SAM box prompt in image pixels.")
@click.option("--single-mask", is_flag=True, help="SAM: return the single-mask output instead of three masks.")
@click.option("--top-k", type=click.IntRange(min=1), help="Classification: classes per image (default 5).")
@click.option("--batch", type=click.IntRange(1, LIMITS.max_batch), default=8, show_default=True,
              help="Images per model run.")
@weights_opt("With a model name instead of EXPORT_DIR: run that PyTorch zoo model with it.")
@ema_option
@threads_opt(also="--engine ray: per actor (1 if the profile leaves it to the runtime), and the CPUs each actor "
                  "reserves.")
@click.option("--max-pixels", default=LIMITS.max_image_pixels, show_default=True, type=click.IntRange(min=1),
              help="Largest image or video frame (width x height) decoded; larger images are skipped as "
                   "unreadable, a larger video is refused.")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of skipping it.")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="local: this process. ray: a Ray Data job (needs the [ray] extra); resumable.")
@click.option("--concurrency", type=click.IntRange(min=1), default=RAY_DEFAULTS.concurrency,
              help="--engine ray: predictor actors (default: 1 up to as many as the cluster's CPUs hold).")
@click.option("--address", default=RAY_DEFAULTS.address,
              help="--engine ray: join this Ray cluster (default: start a local one for the job).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Video: stop after this many frames.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Video: stop after this many seconds of video (of wall-clock time for a live source).")
@click.option("--live/--no-live", default=None,
              help="Video: keep only the newest frames when the model is slower, dropping the others (default: "
                   "cameras and streams without a known length); --live reads a file at its frame rate.")
@click.option("--prompts", type=click.Path(dir_okay=False), metavar="FILE.jsonl",
              help='Video, SAM: prompts by frame, one JSON object a line: {"frame": 0, "points": [[x, y]], '
                   '"point_labels": [1], "box": [x0, y0, x1, y1]}; a prompt holds until the next line.')
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              metavar="SECONDS", help="Video: how long a URL or camera may take to answer and between frames.")
@click.option("--loop", type=click.IntRange(min=1), default=1, show_default=True,
              help="Video: play a file this many times (memory soak tests).")
@click.option("--no-video", is_flag=True, help="Video: write frames.jsonl only, no annotated video.")
@require_signature_option
@click.pass_context
def predict(ctx: click.Context, export_dir: str, images: tuple[str, ...], source: str | None, output: str,
            points: tuple[str, ...], box: str | None, single_mask: bool, top_k: int | None, batch: int,
            weights: str | None, ema: bool, threads: int | None, max_pixels: int, strict: bool, engine: str,
            concurrency: int | None, address: str | None, max_frames: int | None, duration: float | None,
            live: bool | None, prompts: str | None, timeout: float, loop: int, no_video: bool,
            require_signature: str | None) -> None:
    """Predict on IMAGES or a video with an export folder (or a zoo model name with --weights).

    IMAGES are files, folders (the images directly inside), quoted glob patterns ('photos/**/*.jpg') or list
    files (.txt/.lst: one path a line, relative to the list's folder). Writes <image>.json per image, overlay
    PNGs (segmentation colours / SAM masks over the photo), a segmentation label map <image>.labels.png (pixel
    value = class id) and predictions.json with all results. Unreadable images are skipped with a warning (exit
    status 2 at the end); --strict stops at the first.

    --engine ray runs the same prediction as a Ray Data job (one model load per actor; Ray reports the
    progress), also writes predictions.jsonl (one record a line), reads URIs Ray Data can read (s3://...), and
    skips images whose outputs are already complete in the output folder (rerun to resume).

    A video (a file, --source 0 for a camera, an rtsp/http URL; needs the [video] extra) is decoded,
    pre-processed, run, drawn on and encoded in overlapping stages. It writes annotated.mp4 (segmentation
    colours, the top class and score, or SAM masks, at the source's frame rate and size), frames.jsonl (per
    frame: index, time, result, model ms, end-to-end ms) and summary.json, and prints frames, dropped frames,
    model fps, pipeline fps and p50/p99 latency. Ctrl-C or SIGTERM keeps a playable video of the frames done
    and their lines; a source damaged part-way keeps the frames before the damage and exits with status 2.
    """
    from ..predict.inputs import collect_images
    from ..predict.jobs import OutputFolder, PredictorSpec, unique_stems

    stream = _video_source(images, source)
    if stream is None and source is None and not images:
        raise click.UsageError("give IMAGES or --source")
    if stream is not None and (wrong := _given(ctx, IMAGES_ONLY)):
        raise click.UsageError(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} for images, not video")
    if stream is None and (wrong := [f for f in _given(ctx, VIDEO_ONLY) if f != "--source"]):
        raise click.UsageError(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} for video sources")
    _engine_only(ctx, engine, ("concurrency", "address"))
    on_ray = engine == "ray"
    spec = PredictorSpec(export_dir, weights, ema, threads, require_signature)
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
    if stream is not None:
        from .predict_video import predict_video

        given_output = ctx.get_parameter_source("output") not in (None, ParameterSource.DEFAULT)
        predict_video(spec, stream, output if given_output else None, options, prompts,
                      {"max_pixels": max_pixels, "timeout": timeout, "live": live, "loop": loop,
                       "max_frames": max_frames, "duration": duration, "video": not no_video})
        return
    predictor = None if on_ray else spec.load()  # the Ray engine loads one per actor
    paths = collect_images(images or (source,), uris=on_ray)
    stems = unique_stems(paths)
    out = OutputFolder(output)
    out.check(stems)

    with writing(f"write predictions to {out.path}"):
        if on_ray:
            from ..cluster.batch import predict_on_ray

            settings = RaySettings(address=address, concurrency=concurrency)
            outcome = predict_on_ray(spec, paths, stems, out, options, batch, max_pixels, strict, settings,
                                     echo=click.echo, warn=_warn)
            records, failed, resumed = outcome.records, outcome.failed, outcome.resumed
        else:
            records, failed = _predict_here(predictor, paths, stems, out, options, batch, max_pixels, strict)
            resumed = 0
        if records:
            out.finish([records[i] for i in sorted(records)], table=on_ray)
    if not records:
        raise EvitError(f"no image could be read or predicted ({failed[0]})")
    already = f"; {resumed} more were there from an earlier run" if resumed else ""
    click.echo(f"wrote {len(records) - resumed} result(s) to {out.path}/{already}", err=True)
    if failed:
        raise EvitError(f"{len(failed)} of {len(paths)} images could not be read or predicted (first: {failed[0]}); "
                        f"the other results are in {out.path}/")


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
@threads_opt(also="--engine ray: also the CPUs of a replica.")
@click.option("--graceful-timeout", default=SERVE_DEFAULTS.graceful_timeout, show_default=True,
              type=click.IntRange(min=0),
              help="Seconds in-flight requests get to finish on SIGTERM/SIGINT.")
@click.option("--log-level", default=SERVE_DEFAULTS.log_level, show_default=True, type=click.Choice(LOG_LEVELS))
@click.option("--access-log", is_flag=True, default=SERVE_DEFAULTS.access_log, help="Log every request.")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="local: one process (FastAPI + uvicorn). ray: a Ray Serve application (needs the [ray] extra).")
@click.option("--replicas", default=str(RAY_DEFAULTS.replicas), show_default=True, metavar="N|auto",
              help=REPLICAS_HELP)
@click.option("--min-replicas", default=RAY_DEFAULTS.min_replicas, show_default=True, type=click.IntRange(min=1),
              help="--replicas auto: fewest replicas.")
@click.option("--max-replicas", default=RAY_DEFAULTS.max_replicas, show_default=True, type=click.IntRange(min=1),
              help="--replicas auto: most replicas.")
@click.option("--target-ongoing-requests", type=click.FloatRange(min=0, min_open=True),
              default=RAY_DEFAULTS.target_ongoing_requests,
              help="--replicas auto: ongoing requests per replica to scale towards (default: the batch size).")
@click.option("--address", default=RAY_DEFAULTS.address,
              help="--engine ray: join this Ray cluster (default: start a local one, stopped on exit).")
@require_signature_option
@click.pass_context
def serve(ctx: click.Context, export_dir: str, engine: str, replicas: str, min_replicas: int, max_replicas: int,
          target_ongoing_requests: float | None, address: str | None, **settings: Any) -> None:
    """Serve EXPORT_DIR over HTTP: POST /v1/predict, GET /health, /ready, /metrics, /docs.

    Concurrent requests are batched dynamically; SIGTERM drains in-flight requests before exiting. With
    --engine ray the same app runs as a Ray Serve application: replicas (each with --threads CPUs, a GPU
    for GPU exports), batching with @serve.batch, replicas restarted when they die, autoscaling with
    --replicas auto.
    """
    from ..optional import require

    _engine_only(ctx, engine, ("replicas", "min_replicas", "max_replicas", "target_ongoing_requests", "address"))
    require("fastapi", "serving")  # one line naming the [serve] extra when it is missing
    if engine == "ray":
        require("ray.serve", "serve --engine ray")
        from ..cluster.serving import serve_on_ray

        ray_settings = RaySettings(address=address, replicas=_replicas(replicas), min_replicas=min_replicas,
                                   max_replicas=max_replicas, target_ongoing_requests=target_ongoing_requests)
        serve_on_ray(export_dir, ServeSettings(**settings), ray_settings)
        return
    from ..serve.runner import serve as run_server

    run_server(export_dir, ServeSettings(**settings))


TRITON_SERVER_OPTIONS = ("host", "http_port", "grpc_port", "metrics_port", "ready_timeout", "exit_timeout", "log")


@click.command()
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--repo", required=True, type=click.Path(file_okay=False), help="Model repository folder.")
@click.option("--name", help="Name of the pipeline model (default: the model's name).")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(min=1),
              help="Instances per model (instance_group count).")
@click.option("--kind", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "gpu"]),
              help="Instance kind; auto = GPU for TensorRT plans or CUDA/TensorRT providers.")
@click.option("--platform", default="auto", show_default=True, type=click.Choice(TRITON_PLATFORMS),
              help="Graph platform. auto: TensorRT plans, else ONNX Runtime (with --serve: what the server has; "
                   "the bundled server has the Python backend only, so python). python: the graphs run with this "
                   "package's runtime inside Triton's Python backend. openvino: Triton's OpenVINO backend (bf16 IRs "
                   "only: it cannot be told to run f32).")
@click.option("--max-queue-delay-us", default=5000, show_default=True, type=click.IntRange(min=0),
              help="Dynamic batching: longest wait for a fuller batch.")
@threads_opt(also="For each graph model.")
@click.option("--force", is_flag=True,
              help="Replace models of the same name that an earlier `evit-deploy triton` wrote (never others).")
@click.option("--serve", is_flag=True,
              help="Then start a Triton server on the repository (a tritonserver on the PATH, else the one bundled "
                   "in nvidia-pytriton; README, Triton) and serve until Ctrl-C/SIGTERM.")
@click.option("--host", default=TRITON_SERVER.host, show_default=True,
              help="--serve: address the server binds (0.0.0.0 = all interfaces).")
@click.option("--http-port", default=TRITON_SERVER.http_port, show_default=True, type=click.IntRange(0, 65535),
              help="--serve: HTTP port (0 = any free port).")
@click.option("--grpc-port", default=TRITON_SERVER.grpc_port, show_default=True, type=click.IntRange(0, 65535),
              help="--serve: gRPC port (0 = any free port).")
@click.option("--metrics-port", default=TRITON_SERVER.metrics_port, show_default=True,
              type=click.IntRange(0, 65535), help="--serve: Prometheus metrics port (0 = any free port).")
@click.option("--ready-timeout", default=TRITON_SERVER.ready_timeout, show_default=True,
              type=click.FloatRange(min=1), help="--serve: seconds the server gets to load the models.")
@click.option("--exit-timeout", default=TRITON_SERVER.exit_timeout, show_default=True, type=click.IntRange(min=0),
              help="--serve: seconds in-flight requests (and open client connections) get when it stops.")
@click.option("--log", is_flag=True, help="--serve: print Triton's own log on stderr.")
@require_signature_option
@click.pass_context
def triton(ctx: click.Context, export_dir: str, repo: str, name: str | None, instances: int, kind: str, platform: str,
           max_queue_delay_us: int, threads: int | None, force: bool, serve: bool, host: str, http_port: int,
           grpc_port: int, metrics_port: int, ready_timeout: float, exit_timeout: int, log: bool,
           require_signature: str | None) -> None:
    """Write a Triton Inference Server model repository for EXPORT_DIR (graph models + a pipeline model).

    With --serve, also start a Triton server on it: a `tritonserver` on the PATH (all its backends), else the
    one bundled in nvidia-pytriton (tritonserver 2.51, Python backend only; see the README for the install),
    bound to 127.0.0.1 by default, only this export's models loaded. The command returns once the server stops
    (Ctrl-C, SIGTERM); nothing is left running on any exit path, and if the server never got ready the models
    this run wrote are removed again. Run here: the bundled server with the python platform on the CPU. Not run
    here: the ONNX Runtime and TensorRT backends, GPU instances.

    A signed export travels into the repository with its signature; the pipeline model verifies it when Triton
    loads it if EVIT_DEPLOY_REQUIRE_SIGNATURE is set in Triton's environment (see the repository's README; with
    --serve and --require-signature, the server gets it).
    """
    write_options: dict[str, Any] = {"name": name, "instances": instances, "kind": kind, "platform": platform,
                                     "max_queue_delay_us": max_queue_delay_us, "overwrite": force, "threads": threads,
                                     "require_signature": require_signature}
    if serve:
        from ..triton.server import ServerSettings, serve_export

        settings = ServerSettings(host, http_port, grpc_port, metrics_port, ready_timeout, exit_timeout)
        echo = (lambda line: click.echo(line, err=True)) if log else None
        serve_export(export_dir, repo, settings, say=lambda m: click.echo(m, err=True), log=echo, **write_options)
        return
    given = [n for n in TRITON_SERVER_OPTIONS if ctx.get_parameter_source(n) not in (None, ParameterSource.DEFAULT)]
    if given:
        raise click.UsageError(f"{', '.join('--' + n.replace('_', '-') for n in given)} only apply with --serve")
    from rich.console import Console
    from rich.table import Table

    from ..triton import write_repository

    models = write_repository(export_dir, repo, **write_options)
    table = Table(title=f"Triton models in {repo}")
    for col in ("model", "platform", "max_batch_size", "dynamic batching"):
        table.add_column(col)
    for m in models:
        table.add_row(m.name, m.platform, str(m.config["max_batch_size"]),
                      "yes" if "dynamic_batching" in m.config else "no")
    Console().print(table)
    click.echo(f"run: tritonserver --model-repository={repo}  (details: {models[0].folder / 'README.md'}); or "
               "rerun with --serve")
