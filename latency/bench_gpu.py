"""GPU benchmark (needs a CUDA GPU; not run in CI): the fp16 deployment form and the packaged compiled engine.

    python latency/bench_gpu.py [--cases ...] [--block-s 0.5] [--min-blocks 5] [--ci 5] [--budget-s 120]
        [--warmup-s 1] [--out latency/reports]

Cases (the paper's A100 TensorRT settings): seg-L1 Cityscapes 1024x2048 bs1, seg-L1 ADE20K 512x512 bs16, SAM-L0
image encoder 512x512 bs16. Each case is exported to `cloud-gpu-compiled` (torch.export program + compile cache).

Two kinds of rows, each labelled with how it was measured (column "timed"):
  - by the worker protocol (each in its own worker process, blocks alternating until every median's 95% CI is
    within --ci % or --budget-s ends): PyTorch eager fp32 and torch.compile (inductor) fp32 on the GPU, and the
    packaged engine (the export's .pt2, loaded warm by the runtime; its load time is the row's load_s);
  - in this process, timed with CUDA events per call in alternating blocks (the protocol has no worker kind for
    them): the fp16 deployment form eager (fp32 attention/norm islands), its CUDA-graph replay, and
    torch.compile(mode="reduce-overhead") of it.
Every timed call includes the host→device input copy and the device→host output copy (as the paper's figures
include data transfer). The script also records that the fp16 form is finite and within 1e-2 of fp32 at these full
resolutions (32k tokens in one attention sum for Cityscapes), and the paper's A100 figures beside ours, labelled
with the GPU that ran it. Target: engine throughput >= 0.95x torch.compile reduce-overhead (the engine's protocol
row against the in-process row of the same run). Writes gpu-compiled-<gpu>.{json,md,html}.
"""

from __future__ import annotations

import itertools
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from evit_deploy import create_model
from evit_deploy.bench.harness import BenchSettings, references
from evit_deploy.bench.schema import Machine, Row
from evit_deploy.bench.scripts import (
    export,
    fmt_ratio,
    measure_exports,
    median,
    progress,
    row_named,
    run_script,
    script_parser,
    script_report,
    settings_from,
    target_line,
    write_script_report,
)
from evit_deploy.bench.stats import Stats, ratio, summarize
from evit_deploy.errors import EvitError
from evit_deploy.export.precision import mixed_fp16
from evit_deploy.export.transforms import apply_transforms

CASES = {"efficientvit-seg-l1-cityscapes": ((1024, 2048), 1), "efficientvit-seg-l1-ade20k": ((512, 512), 16),
         "efficientvit-sam-l0": ((512, 512), 16)}
ENGINE_TARGET = 0.95
ENGINE = "packaged engine (warm load)"
COMPILED = "fp16 torch.compile reduce-overhead"
Call = Callable[[torch.Tensor], torch.Tensor]


def timed(fn: Call, host_x: torch.Tensor) -> float:
    """One call with input copy, compute and output copy, in ms (CUDA events)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    out = fn(host_x.cuda(non_blocking=True))
    out.float().cpu()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def graph_replay(module: torch.nn.Module, example: torch.Tensor) -> Call:
    static_in = example.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):
            module(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = module(static_in)

    def run(x: torch.Tensor) -> torch.Tensor:
        static_in.copy_(x)
        graph.replay()
        return static_out

    return run


def in_process(contenders: dict[str, Call], host_x: torch.Tensor, settings: BenchSettings) -> dict[str, Stats]:
    """The in-process rows: each contender warmed up, then blocks of calls alternating between them (rotating
    order) until each median's 95% CI is within the protocol's ``ci_pct`` after ``min_blocks`` blocks, or its
    budget ends. Statistics by :func:`summarize`, as every row's."""
    p = settings.protocol
    blocks: dict[str, list[list[float]]] = {k: [] for k in contenders}
    calls = {}
    with torch.no_grad():
        for key, fn in contenders.items():
            ended, times = time.perf_counter() + p.warmup.min_s, []
            while len(times) < p.warmup.min_calls or time.perf_counter() < ended:
                times.append(timed(fn, host_x))
            calls[key] = max(1, round(p.block_s * 1e3 / summarize([times[-p.warmup.window:]]).median))
        started, keys = time.perf_counter(), list(contenders)
        for n in itertools.count():
            for key in keys[n % len(keys):] + keys[:n % len(keys)]:
                blocks[key].append([timed(contenders[key], host_x) for _ in range(calls[key])])
            stats = [summarize(b) for b in blocks.values()]
            settled = n + 1 >= p.min_blocks and all(s.ci_pct is not None and s.ci_pct <= p.ci_pct for s in stats)
            if settled or (n + 1 >= 2 and time.perf_counter() - started > p.budget_s):
                break
    return {k: summarize(b) for k, b in blocks.items()}


def bench_case(name: str, args, workdir: Path) -> tuple[list[Row], dict]:  # noqa: ANN001 - argparse.Namespace
    hw, batch = CASES[name]
    settings = settings_from(args, batches=[batch], baselines=["eager", "compile"])
    model = create_model(name)
    apply_transforms(model, ["attention-deploy", "bicubic-as-conv"], "fp16")
    fp32 = (model.image_encoder if name.startswith("efficientvit-sam") else model).cuda().eval()
    fp16, _ = mixed_fp16(fp32)
    fp16 = fp16.cuda().eval()
    host_x = torch.randn(batch, 3, *hw).pin_memory()
    x = host_x.cuda()
    with torch.no_grad():
        ref, out16 = fp32(x), fp16(x)
    accuracy = {"finite": bool(torch.isfinite(out16).all()),
                "max_rel_vs_fp32": float((out16 - ref).abs().max() / ref.abs().max())}
    del model, fp32, ref, out16  # only the fp16 form stays on the GPU beside the workers

    made = export(name, "cloud-gpu-compiled", workdir / name, ENGINE, imgsz=hw, formats=("torch-compiled",),
                  pytorch=True)
    rows, _ = measure_exports([made], settings)  # PyTorch eager, torch.compile and the engine: worker protocol
    for row in rows:
        row.extra["timed"] = "worker protocol"

    progress(f"{name}: in-process rows (CUDA events) ...")
    torch.compiler.reset()
    compiled = torch.compile(fp16, mode="reduce-overhead")
    contenders = {"fp16 eager": lambda t: fp16(t), "fp16 CUDA-graph replay": graph_replay(fp16, x),
                  COMPILED: lambda t: compiled(t)}
    measured = in_process(contenders, host_x, settings)
    for label, stats in measured.items():
        rows.append(Row(name, "pytorch", "pytorch-" + label.removeprefix("fp16 ").replace(" ", "-"), "fp16", batch,
                        device=torch.cuda.get_device_name(), latency=stats,
                        extra={"row": label, "timed": "in-process, CUDA events"}))
    fp16_eager = median(row_named(rows, "fp16 eager", name))
    for row in rows:
        row.extra["vs_fp16_eager"] = ratio(median(row), fp16_eager)
    engine = row_named(rows, ENGINE, name)
    over = ratio(median(row_named(rows, COMPILED, name)), median(engine))  # throughput ratio = inverse latency
    return rows, {"model": name, "accuracy": accuracy, "export_s": made.export_s,
                  "engine_load_s": engine.load_s if engine else None, "engine_over_compile": over}


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    machine = Machine.here(args.threads or None)  # its load average at the start
    settings = settings_from(args)
    if not torch.cuda.is_available():
        raise EvitError("bench_gpu.py needs a CUDA GPU")
    warnings.simplefilter("ignore")
    gpu = torch.cuda.get_device_name()
    rows, facts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            case_rows, case_facts = bench_case(name, args, Path(tmp))
            rows += case_rows
            facts.append(case_facts)
    report = script_report(f"fp16 deployment form and packaged engine on {gpu}", settings, "bench_gpu.py", rows=rows,
                           target="cloud-gpu-compiled", machine=machine)
    report.settings |= {"batches": {n: CASES[n][1] for n in args.cases},
                        "timing": "host->device and device->host copies included in every timed call"}
    report.references = [r for name in args.cases for r in references(name) if r.device == "a100"]
    report.columns = {"row": "row", "timed": "timed", "vs_fp16_eager": "/ fp16 eager"}
    report.sections["tables"] = [{
        "title": "fp16 form and engine",
        "columns": ["model", "fp16 finite", "fp16 max rel vs fp32", "export + build s", "engine load s",
                    "engine / compile throughput"],
        "rows": [[f["model"], f["accuracy"]["finite"], f["accuracy"]["max_rel_vs_fp32"], f["export_s"],
                  f["engine_load_s"], f["engine_over_compile"]] for f in facts]}]
    report.notes += [target_line(f"{f['model']} engine throughput / torch.compile reduce-overhead",
                                 fmt_ratio(f["engine_over_compile"]), f">= {ENGINE_TARGET:g}x",
                                 None if f["engine_over_compile"] is None
                                 else f["engine_over_compile"] >= ENGINE_TARGET) for f in facts]
    report.notes.append("Rows timed in-process (CUDA events, alternating blocks, the statistics of every row) have no "
                        "worker kind in the protocol; the engine's ratio to torch.compile compares its worker row with "
                        "the in-process row, both including the copies.")
    write_script_report(args.out, f"gpu-compiled-{gpu.lower().replace(' ', '-')}", report)


if __name__ == "__main__":
    run_script(main)
