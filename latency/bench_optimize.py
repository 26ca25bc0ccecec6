"""Benchmark: `evit-deploy optimize` against its targets (issue 29), on this machine.

    .venv/bin/python latency/bench_optimize.py [--models efficientvit-b1-r224 efficientvit-seg-b1-cityscapes]
        [--threads 2] [--max-drop 1] [--budget-s S ...] [--cache DIR] [--out latency/reports]

For each model (B1 at 224x224, seg-B1 Cityscapes at 512x1024; batch 1, random weights, accuracy by agreement with
PyTorch on the calibration images, --max-drop 1): the whole search as a user runs it, `evit-deploy optimize MODEL
--imgsz H W --threads N --max-drop 1 --budget-s B` in its own process with an empty cache (its exports are part of
the time), B being the issue's limit (900 s for B1, 1800 s for seg-B1) unless --budget-s gives one per model (in
--models order; the wall-time targets stay the issue's). Read back from the search's own report:

- the winner against the default cpu-openvino export, timed in the same alternation by the full protocol: the
  native tool's medians where both rows have one (benchmark_app, litert-benchmark), else ours (said so).
  Target: the winner at least 1.1x faster.
- the search's wall time (process start to exit). Targets: 15 minutes for B1, 30 for seg-B1.
- the winner against this machine's arithmetic floors: the model's MACs x 2 over the matrix-multiply rates measured
  here with the same threads (fp32 and int8; bf16 where the CPU has bf16 instructions).

Writes `optimize-cpu.{json,md,html}`; each search's own report (every trial, the Pareto plot) is copied to
`optimize-<model>/` beside it. Record it on a quiet machine: the figures say what this machine did.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evit_deploy.bench.render import REPORT, REPORT_FILES
from evit_deploy.bench.schema import Machine
from evit_deploy.bench.scripts import (
    floors_ms,
    progress,
    run_script,
    script_parser,
    script_report,
    target_line,
    write_script_report,
)
from evit_deploy.errors import EvitError
from evit_deploy.files import atomic_write, check_own_files
from evit_deploy.zoo.stats import count_macs

CASES = {"efficientvit-b1-r224": ((224, 224), 900.0), "efficientvit-seg-b1-cityscapes": ((512, 1024), 1800.0)}
SPEEDUP_TARGET = 1.1
PRECISIONS = ("fp32", "bf16", "int8")  # the floors


def search(model: str, size: tuple[int, int], budget_s: float, args, workdir: Path) -> tuple[dict, float, Path]:  # noqa: ANN001
    """Run one search as a user does; returns its report, its wall seconds and its output folder."""
    out = workdir / f"{model}-host"
    cache = args.cache or workdir / "cache"
    cmd = [sys.executable, "-m", "evit_deploy", "optimize", model, "--imgsz", str(size[0]), str(size[1]),
           "--threads", str(args.threads), "--max-drop", f"{args.max_drop:g}", "--budget-s", f"{budget_s:g}",
           "--cache", str(cache), "-o", str(out)]
    progress(f"{model}: {' '.join(cmd[2:])}")
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise EvitError(f"optimize {model} exited {done.returncode}: {done.stdout.strip()[-400:]}")
    return json.loads((out / "report.json").read_text()), wall, out


def _final(report: dict, reference: bool) -> dict | None:
    for row in report["rows"]:
        stage = (row.get("extra") or {}).get("stage", "")
        if stage.startswith("final") and ("reference" in stage) == reference:
            return row
    return None


def _native(row: dict | None) -> float | None:
    native = (row or {}).get("native") or {}
    return (native.get("latency") or {}).get("median")


def _ours(row: dict | None) -> float | None:
    return ((row or {}).get("latency") or {}).get("median")


def summarize_case(model: str, size: tuple[int, int], limit_s: float, report: dict, wall: float,
                   floors: dict[str, float | None]) -> tuple[list, list[str]]:
    """One table row and the target lines of one search."""
    search_record = report["sections"]["search"]
    ref = _final(report, reference=True)
    winner = next((r for r in report["rows"] if (r.get("model") == search_record.get("winner")
                                                 and (r.get("extra") or {}).get("stage") == "final")), None)
    if winner is None or ref is None:
        return [model, "x".join(map(str, size)), search_record.get("winner"), None, None, None, "-", round(wall),
                None, None, None], [f"{model}: the search named no winner or no reference: see its report."]
    by_native = _native(winner) is not None and _native(ref) is not None
    w_ms, r_ms = (_native(winner), _native(ref)) if by_native else (_ours(winner), _ours(ref))
    speedup = r_ms / w_ms if w_ms and r_ms else None
    precision = winner.get("precision") or "fp32"
    floor = floors.get("int8" if precision == "int8" else ("bf16" if precision == "bf16" else "fp32"))
    row = [model, "x".join(map(str, size)), winner["model"], round(w_ms, 3) if w_ms else None,
           round(r_ms, 3) if r_ms else None, round(speedup, 2) if speedup else None,
           "native tools" if by_native else "ours (no native tool for one row)", round(wall),
           round(floors["fp32"], 2) if floors["fp32"] else None, round(floor, 2) if floor else None,
           round(w_ms / floor, 2) if w_ms and floor else None]
    lines = [
        target_line(f"{model}: winner vs the default cpu-openvino export (same alternation, "
                    f"{'native tools' if by_native else 'our medians'})", f"{speedup:.2f}x" if speedup else "-",
                    f">= {SPEEDUP_TARGET:g}x", None if speedup is None else speedup >= SPEEDUP_TARGET),
        target_line(f"{model}: the search's wall time", f"{wall / 60:.1f} min", f"<= {limit_s / 60:.0f} min",
                    wall <= limit_s)]
    return row, lines


def main() -> None:
    parser = script_parser(__doc__, protocol=False)
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--max-drop", type=float, default=1.0, help="accuracy points a candidate may lose")
    parser.add_argument("--budget-s", type=float, nargs="+",
                        help="each search's --budget-s, one per model (default: the issue's limits, 900 and 1800)")
    parser.add_argument("--cache", type=Path, help="a search cache to reuse (default: an empty one per run)")
    args = parser.parse_args()
    budgets = args.budget_s or [CASES[m][1] for m in args.models]
    if len(budgets) != len(args.models):
        parser.error("--budget-s takes one value per model")
    machine = Machine.here(args.threads)  # its load average at the start
    rows, notes, floors_rows = [], [], []
    with tempfile.TemporaryDirectory(prefix="evit-bench-optimize-") as tmp:
        for model, budget_s in zip(args.models, budgets):
            size, limit_s = CASES[model]
            macs = count_macs(model, size)
            floors = floors_ms(macs, args.threads)  # measured before the search, in this process
            floors_rows.append([model, "x".join(map(str, size)), round(macs / 1e9, 3),
                                *(None if floors[p] is None else round(floors[p], 2) for p in PRECISIONS)])
            report, wall, out = search(model, size, budget_s, args, Path(tmp))
            row, lines = summarize_case(model, size, limit_s, report, wall, floors)
            rows.append(row)
            notes += lines
            kept = args.out / f"optimize-{model}"
            check_own_files(kept, REPORT, REPORT_FILES)  # a folder of the user's is never overwritten
            for name in REPORT_FILES:
                atomic_write(kept / name, (out / name).read_bytes())
    report = script_report("evit-deploy optimize on this machine: winner vs the default export, search time, floors",
                           {"threads": args.threads, "max_drop": args.max_drop,
                            "budget_s": dict(zip(args.models, budgets)), "batch": 1,
                            "weights": "random (the zoo's deterministic)",
                            "accuracy": "agreement with PyTorch on the calibration images"},
                           "bench_optimize.py", machine=machine)
    report.sections["tables"] = [
        {"title": "Winners", "columns": ["model", "input", "winner", "winner ms", "default cpu-openvino ms",
                                         "speedup", "timed by", "search s", "fp32 floor ms",
                                         "floor ms (winner's precision)", "winner / floor"],
         "rows": rows, "note": "Both medians from the search's final alternation (the full protocol)."},
        {"title": "Arithmetic floors of this machine", "columns": ["model", "input", "GMAC", "fp32 ms", "bf16 ms",
                                                                   "int8 ms"],
         "rows": floors_rows, "note": f"MACs x 2 / the {args.threads}-thread matrix-multiply rate measured here "
                                      "(1024x1024; fp32 and bf16 by torch, int8 by ONNX Runtime's MatMulInteger); "
                                      "bf16 empty where the CPU has no bf16 instructions."}]
    report.notes += notes + ["Each search's own report (every trial, the Pareto front): `optimize-<model>/`."]
    write_script_report(args.out, "optimize-cpu", report)


if __name__ == "__main__":
    run_script(main)
