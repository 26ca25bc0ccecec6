"""What the benchmark scripts in ``latency/`` share: their common arguments (the measurement protocol's), the exports
they make and measure by the protocol (:func:`measure_exports`: every export a :class:`~.harness.BenchItem` of one
:func:`~.harness.measure_items` call), the statement of their targets, and the one report model and renderer,
written as ``<stem>.json``, ``<stem>.md`` and ``<stem>.html`` in the reports folder.

No script times a runtime or PyTorch itself: every latency row comes from the protocol's worker processes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..artifacts import Manifest, read_manifest, seal, write_manifest
from ..errors import EvitError
from ..files import Owner, atomic_write, check_own_files, fixed_files, writing
from ..host import library_versions
from .harness import BenchItem, BenchSettings, measure_items, new_report, open_item, timed_artifacts
from .protocol import ProtocolSettings, check_settings
from .render import html_page, markdown
from .schema import Machine, Report, Row, is_ours

REPORTS = Path(__file__).resolve().parents[2] / "latency" / "reports"
DEFAULTS = ProtocolSettings()
EXIT_INPUT_ERROR = 2


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The script's docstring as written, and each option's default."""


def script_parser(doc: str, threads: int = 2, budget_s: float = DEFAULTS.budget_s,
                  protocol: bool = True) -> argparse.ArgumentParser:
    """An argument parser (its description: the script's docstring) with ``--threads``, ``--out`` (the reports
    folder) and, with ``protocol``, the protocol's options as ``bench run`` has them (a script without protocol
    rows, e.g. an HTTP load test, leaves them out)."""
    parser = argparse.ArgumentParser(description=doc.strip(), formatter_class=_HelpFormatter)
    parser.add_argument("--threads", type=int, default=threads, help="threads of every backend")
    if protocol:
        parser.add_argument("--block-s", type=float, default=DEFAULTS.block_s, help="seconds of calls per block")
        parser.add_argument("--min-blocks", type=int, default=DEFAULTS.min_blocks,
                            help="blocks of each row before it may count as settled")
        parser.add_argument("--ci", type=float, default=DEFAULTS.ci_pct,
                            help="a row is settled when its median's 95%% CI is within +- this %%")
        parser.add_argument("--budget-s", type=float, default=budget_s,
                            help="seconds of timed blocks at most (loading not counted)")
        parser.add_argument("--warmup-s", type=float, default=DEFAULTS.warmup.min_s,
                            help="seconds each worker warms up at least")
        parser.add_argument("--no-native", action="store_true", help="skip the native benchmark tools")
    parser.add_argument("--out", type=Path, default=REPORTS, help="report folder")
    return parser


def settings_from(args: argparse.Namespace, batches: list[int] | None = None,
                  baselines: list[str] | None = None) -> BenchSettings:
    """The :class:`BenchSettings` of a script's parsed arguments (refused in one line when no run can use them)."""
    protocol = ProtocolSettings(threads=args.threads, block_s=args.block_s, min_blocks=args.min_blocks,
                                ci_pct=args.ci, budget_s=args.budget_s,
                                warmup=replace(DEFAULTS.warmup, min_s=args.warmup_s), native=not args.no_native)
    check_settings(protocol)
    return BenchSettings(batches or [1], baselines or ["eager"], protocol)


def script_report(title: str, settings: BenchSettings | dict[str, Any], script: str,
                  machine: Machine | None = None, **fields: Any) -> Report:
    """A ``script`` report (machine, library versions and settings filled in); ``script``: the file that wrote it.
    ``settings``: the protocol's (scripts with protocol rows) or a dict of what the script ran with (its
    ``threads`` key, if any, is the machine's threads); ``machine``: taken when the script started (its load
    average then), else now."""
    if isinstance(settings, BenchSettings):
        report = new_report("script", title, settings, **fields)
    else:
        report = Report(kind="script", title=title, machine=Machine.here(settings.get("threads") or None),
                        settings=dict(settings), versions=library_versions(), **fields)
    if machine is not None:
        report.machine = machine
    report.notes.append(f"Produced by `latency/{script}`.")
    return report


def _earlier_script_report(doc: Any) -> bool:
    """A report of a benchmark script from before the typed report (its machine and results, no generator)."""
    return isinstance(doc, dict) and "machine" in doc and ("results" in doc or "result" in doc)


def script_report_owner(stem: str) -> Owner:
    """The ownership rule of one script's report files (evit_deploy.files): ``<stem>.json`` is a report of ours."""
    return Owner("benchmark report", f"{stem}.json",
                 fixed_files((f"{stem}.md", f"{stem}.html"), lambda doc: is_ours(doc) or _earlier_script_report(doc)))


def write_script_report(out: Path, stem: str, report: Report) -> None:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.html`` in ``out``, each written whole; the Markdown is printed.
    Files of those names that are not a report of ours are refused (before anything is written)."""
    check_own_files(out, script_report_owner(stem), (f"{stem}.json", f"{stem}.md", f"{stem}.html"))
    report.machine.finish()
    md = markdown(report)
    with writing(f"write the report to {out}"):
        atomic_write(out / f"{stem}.json", report.to_json())
        atomic_write(out / f"{stem}.md", md)
        atomic_write(out / f"{stem}.html", html_page(report, md))
    print(md)


def progress(text: str) -> None:
    """A script's progress line (stderr; the report goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


def run_script(main: Callable[[], None]) -> None:
    """Run a script's ``main``: an :class:`EvitError` is one line ``error: ...`` and exit 2 (a traceback only with
    ``--debug`` on the command line), Ctrl-C exits 130."""
    try:
        main()
    except EvitError as exc:
        if "--debug" in sys.argv:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_INPUT_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


# ------------------------------------------------------------------------------------------------ targets


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "NOT met")


def target_line(what: str, value: str, target: str, met: bool | None) -> str:
    """One line of a report's notes: ``what`` measured ``value`` against ``target`` — met or not."""
    return f"Target {what}: {target}; this run: {value} ({verdict(met)})."


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


# ------------------------------------------------------------------------------------------------ exports


@dataclass
class ScriptExport:
    """An export a script made and measures: its folder, how long exporting took, the label its rows carry
    (``extra["row"]``), which artifacts to measure and how.

    ``formats``: measure only the artifacts of these formats (None: every runnable one); ``pytorch``: this
    export's rows include the PyTorch baselines (one export per model has them); ``shared_cpu``: the artifacts run
    with idle threads that do not spin (ONNX Runtime's production default spins); ``weights``: the checkpoint the
    PyTorch rows are built from."""

    folder: Path
    label: str
    export_s: float | None = None
    formats: tuple[str, ...] | None = None
    pytorch: bool = False
    shared_cpu: bool = False
    weights: str | None = None
    validation: dict[str, dict[str, Any]] = field(default_factory=dict)  # artifact path -> its validation figures

    @property
    def model(self) -> str:
        return read_manifest(self.folder, verify=False, require_signature=False).model

    def facts(self, artifact: str) -> dict[str, Any]:
        """What the report says of one artifact beside its latency: export seconds, file size, validation."""
        manifest = read_manifest(self.folder, verify=False, require_signature=False)
        entry = next(a for a in manifest.artifacts if a.path == artifact)
        size = sum((self.folder / p).stat().st_size for p in entry.paths)
        return {"export_s": self.export_s, "size_mib": size / 2**20, **self.validation.get(artifact, {})}


def export(model: str, target: str, output: Path, label: str, precision: str | None = None,
           imgsz: tuple[int, ...] | None = None, weights: str | None = None, calib: str | None = None,
           **options: Any) -> ScriptExport:
    """Export ``model`` for ``target`` (validated against PyTorch as every export is), timed; ``options`` go to the
    returned :class:`ScriptExport`."""
    from ..export import ExportRequest, run_export

    progress(f"exporting {model} for {target}{f' ({precision})' if precision else ''} ...")
    started = time.perf_counter()
    result = run_export(ExportRequest(model, target, weights, imgsz, precision=precision, output=str(output),
                                      calib=calib))
    seconds = time.perf_counter() - started
    validation = {r.artifact: {"validated": r.passed,
                               "max_rel": max(m["max_rel"] for m in r.outputs.values()),
                               "min_cosine": min(m["min_cosine"] for m in r.outputs.values()),
                               "agreement": r.agreement} for r in result.reports}
    return ScriptExport(result.folder, label, seconds, weights=weights, validation=validation, **options)


def variant_export(template: Path, file: Path, folder: Path, precision: str, note: str) -> Path:
    """An export folder for an artifact a script built outside the exporter (another int8 scheme of the same
    graph, say): ``template``'s manifest with its model artifact replaced by ``file`` (copied, its sha256 recorded),
    so that the protocol's workers open it as they open any export. The file must take the template artifact's
    inputs (checked when a worker opens it)."""
    manifest: Manifest = read_manifest(template, verify=False, require_signature=False)
    entry = next((a for a in timed_artifacts(manifest) if file.suffix == Path(a.path).suffix), None)
    if entry is None:
        raise EvitError(f"{template} has no model artifact of the kind of {file.name}")
    folder.mkdir(parents=True, exist_ok=False)
    shutil.copyfile(file, folder / file.name)
    variant = replace(entry, path=file.name, precision=precision, sha256="", notes=[note], companions={})
    seal(folder, variant)
    write_manifest(folder, replace(manifest, precision=precision, artifacts=[variant], files=[file.name],
                                   validation={}, quantization={}))
    return folder


def _item(export: ScriptExport, settings: BenchSettings) -> BenchItem:
    item = open_item(export.folder, settings, export.weights, extra={"row": export.label},
                     require_signature=False)  # the script made it just now
    item.pytorch, item.shared_cpu = export.pytorch, export.shared_cpu
    if export.formats is not None:
        kept = [a for a in item.manifest.artifacts if a.format in export.formats]
        item.manifest = replace(item.manifest, artifacts=kept)
    return item


def measure_exports(exports: list[ScriptExport], settings: BenchSettings) -> tuple[list[Row], list[str]]:
    """Every export's artifacts (and the PyTorch baselines of those with ``pytorch``) measured by the protocol in
    one alternation; each artifact row carries its export's label (unique per model) and
    :meth:`ScriptExport.facts` in ``extra``, each PyTorch row its format as label. Returns (rows, skipped)."""
    by_label = {(e.model, e.label): e for e in exports}
    if len(by_label) != len(exports):
        raise EvitError(f"two exports of one model share a label: {[e.label for e in exports]}")
    items = [_item(e, settings) for e in exports]
    rows, skipped = measure_items(items, settings, progress)
    for row in rows:
        row.extra = dict(row.extra)  # harness.plan gives the rows of one item one shared extra dict
        if row.artifact:
            row.extra.update(by_label[(row.model, row.extra["row"])].facts(row.artifact))
        else:
            row.extra["row"] = row.format
    return rows, skipped


def row_named(rows: list[Row], label: str, model: str | None = None) -> Row | None:
    """The row labelled ``label`` (of ``model``), or None."""
    return next((r for r in rows if r.extra.get("row") == label and (model is None or r.model == model)), None)


def median(row: Row | None) -> float | None:
    """A measured row's median ms (None when the row is missing or failed)."""
    return row.latency.median if row is not None and row.status != "failed" else None


# ------------------------------------------------------------------------------------------------ floors


def _best_seconds(call: Callable[[], Any], seconds: float) -> float:
    """The fastest of repeated ``call()`` over ``seconds`` after 3 warm-up calls (an arithmetic rate, not a latency)."""
    for _ in range(3):
        call()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_rate(dtype: Any, threads: int, n: int = 1024, seconds: float = 1.0) -> float:
    """Achieved GFLOP/s of an n x n matrix product in the torch ``dtype`` with ``threads`` threads (the best of
    repeated products: the arithmetic rate, not a latency)."""
    import torch

    from ..host import torch_threads

    with torch_threads(threads):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        best = _best_seconds(lambda: torch.mm(a, b), seconds)
    return 2 * n**3 / best / 1e9


def int8_matmul_rate(threads: int, n: int = 1024, seconds: float = 1.0) -> float:
    """Achieved GOP/s of an n x n int8 matrix product (u8 x s8 -> s32) by ONNX Runtime's MatMulInteger, the int8
    kernel its quantized models run (torch's CPU int8 product is a reference loop, not a rate)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "mm", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.integers(0, 255, (n, n), dtype=np.uint8), "b": rng.integers(-128, 127, (n, n), dtype=np.int8)}
    onnx.checker.check_model(model)
    return 2 * n**3 / _best_seconds(lambda: session.run(None, feed), seconds) / 1e9


def floors_ms(macs: float, threads: int) -> dict[str, float | None]:
    """The arithmetic floor of a model of ``macs`` multiply-adds per precision: MACs x 2 / the matrix-multiply rate
    measured here with ``threads`` threads; bf16 is None on a CPU without bf16 instructions (torch would emulate
    it: not a floor)."""
    import torch

    from ..host import cpu_flags

    has_bf16 = any(f in cpu_flags() for f in ("avx512_bf16", "amx_bf16", "bf16"))
    rates = {"fp32": matmul_rate(torch.float32, threads),
             "bf16": matmul_rate(torch.bfloat16, threads) if has_bf16 else None,
             "int8": int8_matmul_rate(threads)}
    return {p: None if r is None else 2 * macs / (r * 1e9) * 1e3 for p, r in rates.items()}
