"""GPU benchmark (needs a CUDA GPU; not run in CI): the fp16 deployment form and the packaged compiled engine.

    python latency/bench_gpu.py [--runs 100] [--warmup 20] [--out latency/reports]

Cases (the paper's A100 TensorRT settings): seg-L1 Cityscapes 1024x2048 bs1, seg-L1 ADE20K 512x512 bs16, SAM-L0
image encoder 512x512 bs16. For each, in one run and interleaved round-robin:
  - fp16 eager (the mixed deployment form, fp32 attention/norm islands),
  - fp16 CUDA-graph replay of the same module,
  - torch.compile(mode="reduce-overhead") of the same module,
  - the packaged engine (`cloud-gpu-compiled` export: torch.export program + compile cache), loaded warm,
each timed with CUDA events per call including the host→device input copy and device→host output copy (as the
paper's figures include data transfer). It also records that the fp16 form is finite and within 1e-2 of fp32 at
these full resolutions (32k tokens in one attention sum for Cityscapes), the engine's load time (no compile
step), and the paper's A100 figure beside ours, labelled with the GPU that ran this script.
Target: engine throughput >= 0.95x torch.compile in the same run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch

from evit_deploy import create_model, runtime
from evit_deploy.bench.reference import hardware_rows
from evit_deploy.bench.scripts import script_parser, write_report
from evit_deploy.export.pipeline import ExportRequest, run_export, versions
from evit_deploy.export.precision import mixed_fp16
from evit_deploy.export.transforms import apply_transforms

CASES = [
    ("efficientvit-seg-l1-cityscapes", (1024, 2048), 1),
    ("efficientvit-seg-l1-ade20k", (512, 512), 16),
    ("efficientvit-sam-l0", (512, 512), 16),
]


def timed(fn, host_x: torch.Tensor) -> float:
    """One call with input copy, compute and output copy, in ms (CUDA events)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    out = fn(host_x.cuda(non_blocking=True))
    out.float().cpu()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def graph_replay(module: torch.nn.Module, example: torch.Tensor):
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


def bench_case(name: str, hw: tuple[int, int], batch: int, runs: int, warmup: int, workdir: Path) -> dict:
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

    started = time.perf_counter()
    result = run_export(ExportRequest(name, "cloud-gpu-compiled", imgsz=hw, batch=batch,
                                      output=str(workdir / name)))
    export_s = time.perf_counter() - started
    pt2 = next(a["path"] for a in result.manifest.to_dict()["artifacts"] if a["format"] == "torch-compiled")
    torch.compiler.reset()
    started = time.perf_counter()
    engine = runtime.load(result.folder / pt2)
    engine.module(x)  # first call: with the restored cache this records CUDA graphs but does not compile
    load_s = time.perf_counter() - started

    torch.compiler.reset()
    compiled = torch.compile(fp16, mode="reduce-overhead")
    contenders = {
        "fp16 eager": lambda t: fp16(t),
        "fp16 CUDA-graph replay": graph_replay(fp16, x),
        "torch.compile reduce-overhead": lambda t: compiled(t),
        "packaged engine (warm load)": lambda t: engine.module(t),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    with torch.no_grad():
        for fn in contenders.values():
            for _ in range(warmup):
                timed(fn, host_x)
        for _ in range(runs):
            for key, fn in contenders.items():
                times[key].append(timed(fn, host_x))
    rows = {k: {"median_ms": statistics.median(v), "p90_ms": sorted(v)[int(0.9 * (len(v) - 1))],
                "throughput_img_s": batch * 1000 / statistics.median(v)} for k, v in times.items()}
    paper = [r for r in hardware_rows(name) if r["device"] == "a100"]
    return {"model": name, "input_size": list(hw), "batch": batch, "fp16_accuracy": accuracy, "export_s": export_s,
            "engine_load_s": load_s, "results": rows, "paper_a100": paper,
            "engine_over_compile": rows["packaged engine (warm load)"]["throughput_img_s"]
            / rows["torch.compile reduce-overhead"]["throughput_img_s"]}


def main() -> None:
    args = script_parser(__doc__, runs=100, warmup=20).parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU")
    warnings.simplefilter("ignore")
    gpu = torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [bench_case(n, hw, b, args.runs, args.warmup, Path(tmp)) for n, hw, b in CASES]
    report = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "gpu": gpu,
              "versions": versions(), "timing": "CUDA events per call, host->device and device->host copies included",
              "cases": cases}
    slug = gpu.lower().replace(" ", "-")
    lines = [f"# fp16 deployment form and packaged engine on {gpu}", "",
             f"{report['created']}; median of {args.runs} interleaved runs; {report['timing']}.", "",
             "| model | input | batch | contender | median ms | img/s (this GPU) | paper A100 TensorRT img/s |",
             "|---|---|---:|---|---:|---:|---:|"]
    for c in cases:
        paper = c["paper_a100"][0]["value"] if c["paper_a100"] else "-"
        for key, r in c["results"].items():
            lines.append(f"| {c['model']} | {c['input_size'][0]}x{c['input_size'][1]} | {c['batch']} | {key} | "
                         f"{r['median_ms']:.2f} | {r['throughput_img_s']:.0f} | {paper} |")
    lines += [""] + [f"- {c['model']}: fp16 finite={c['fp16_accuracy']['finite']}, max rel vs fp32 "
                     f"{c['fp16_accuracy']['max_rel_vs_fp32']:.2e}; engine loads in {c['engine_load_s']:.1f}s "
                     f"(export+build {c['export_s']:.0f}s); engine/compile throughput {c['engine_over_compile']:.2f}"
                     for c in cases]
    write_report(args.out, f"gpu-compiled-{slug}", report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
