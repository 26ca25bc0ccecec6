"""``evit-deploy bench import``: what a device produced from a bundle (a results folder, or one file) → the same
report as ``evit-deploy bench``, every row labelled with the named device, beside the paper's figure for that
device class, with the per-layer table and the correctness of the device's outputs (the ``validate`` gate)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..artifacts import confined
from ..bench.reference import hardware_rows, model_facts
from ..bench.schema import Machine, Reference, Report, Row
from ..bench.stats import Stats
from ..errors import EvitError
from ..export import Judged, judge_outputs
from ..files import sha256_file
from ..signing import TrustSpec
from ..tasks import task_spec
from .bundle import Bundle, read_bundle
from .golden import dequantized
from .parsers import (
    KIND_TOOLS,
    DeviceOutput,
    LayerTime,
    Timing,
    parse_benchmark_log,
    parse_op_profile,
    parse_perf_test_log,
    parse_sha_file,
    parse_trtexec_output,
    parse_trtexec_profile,
    parse_trtexec_times,
    sniff,
)

MAX_RESULT_BYTES = 512 * 2**20  # one result file (a trtexec --exportOutput of a SAM embedding is ~12 MB of text)
MAX_RESULT_FILES = 10_000
TOP_LAYERS = 15
TIMING_KINDS = {"benchmark_model": "benchmark_model-log", "onnxruntime_perf_test": "perf-test-log",
                "trtexec": "trtexec-times"}


@dataclass
class ResultFile:
    rel: str
    path: Path
    kind: str
    text: str | None
    doc: Any = None

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)


@dataclass
class Found:
    """The result files of one import, by kind."""

    files: dict[str, list[ResultFile]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    golden_logs: dict[str, Path] = field(default_factory=dict)

    def one(self, kind: str) -> ResultFile | None:
        found = self.files.get(kind, [])
        if len(found) > 1:
            raise EvitError(f"the results hold {len(found)} files of the same kind ({kind}): "
                            f"{', '.join(f.rel for f in found)}; import one run at a time")
        return found[0] if found else None


def _read(path: Path) -> str | None:
    size = path.stat().st_size
    if size > MAX_RESULT_BYTES:
        raise EvitError(f"{path} is {size} bytes; a result file of bench import is at most {MAX_RESULT_BYTES} bytes")
    if path.suffix == ".bin":
        return None
    return path.read_bytes().decode("utf-8", errors="replace")


def _collect(results: Path, tool: str) -> Found:
    if not results.exists():
        raise EvitError(f"results not found: {results}")
    single = results.is_file()
    paths = [results] if single else sorted(p for p in results.rglob("*") if p.is_file() and not p.is_symlink())
    if len(paths) > MAX_RESULT_FILES:
        raise EvitError(f"{results} holds more than {MAX_RESULT_FILES} files: not a results folder of a bundle")
    found = Found()
    for path in paths:
        rel = path.name if single else path.relative_to(results).as_posix()
        if not single and rel.startswith("golden/") and path.suffix == ".log":
            found.golden_logs[path.stem] = path
            continue
        text = _read(path)
        kind, doc = sniff(path, text)
        if kind is None:
            if single:
                raise EvitError(f"{path} is not output of {tool} (nor a file bench import reads: a benchmark_model "
                                "log or op-profile CSV, an onnxruntime_perf_test log, a trtexec --exportTimes/"
                                "--exportProfile/--exportOutput JSON, device outputs .bin)")
            found.ignored.append(rel)
            continue
        owner = KIND_TOOLS[kind]
        if owner is not None and owner != tool:
            raise EvitError(f"{path} is {owner} output, but the bundle runs {tool}: these results are not from "
                            "this bundle")
        found.files.setdefault(kind, []).append(ResultFile(rel, path, kind, text, doc))
    if not found.files:
        raise EvitError(f"{results} holds no result of {tool} (ignored: {', '.join(found.ignored[:5]) or 'nothing'})")
    return found


# ----------------------------------------------------------------------------------------- belonging checks


def _checks(bundle: Bundle, found: Found, timing: Timing | None) -> list[str]:
    """Refuse results of another bundle or model; returns what was checked, for the report."""
    doc, checks = bundle.doc, []
    ident = found.one("bundle-id")
    if ident is not None:
        got = ident.text.strip()
        if got != doc["bundle_id"]:
            raise EvitError(f"{ident.path} says bundle {got}, not {doc['bundle_id']}: these results belong to "
                            "another bundle")
        checks.append(f"bundle id {got} matches")
    sha = found.one("sha256")
    if sha is not None:
        digests = parse_sha_file(sha.text)
        name = Path(doc["artifact"]["path"]).name
        if name not in digests:
            raise EvitError(f"{sha.path} has no sha256 of {name}: these results are not from this bundle")
        if digests[name] != doc["artifact"]["sha256"]:
            raise EvitError(f"the device ran a different {name}: its sha256 in {sha.path} differs from the bundle's "
                            f"({digests[name][:12]}… vs {doc['artifact']['sha256'][:12]}…)")
        checks.append(f"sha256 of {name} on the device matches the bundle")
    if timing is not None and timing.tool == "benchmark_model":
        graph = timing.facts.get("graph")
        expected = Path(doc["run"]["model_on_device"]).name
        if graph is not None:  # a renamed copy is the same model: the file size below is what identifies it
            checks.append(f"benchmark_model ran {graph}" + ("" if Path(graph).name == expected
                                                            else f" (not named {expected} as in the bundle)"))
        size = timing.facts.get("model_size_mb")
        if size is not None:
            want = doc["artifact"]["bytes"] / 1e6
            if abs(float(size) - want) > 1e-5 * want + 1e-6:
                raise EvitError(f"{timing.source} ran a model of {size} MB; the bundle's {expected} is {want:.6g} MB: "
                                "another model")
            checks.append(f"model file size {size} MB matches")
    return checks


# ------------------------------------------------------------------------------------------- correctness


def _raw_outputs(bundle: Bundle, rf: ResultFile, reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Split a raw output file (stored output tensors in order) by the bundle's output specs."""
    data = rf.path.read_bytes()
    specs = bundle.doc["artifact"]["outputs"]
    sizes = [(s, np.dtype(s["dtype"]), int(np.prod(reference[s["name"]].shape))) for s in specs]
    want = sum(dt.itemsize * n for _, dt, n in sizes)
    if len(data) != want:
        raise EvitError(f"{rf.path} holds {len(data)} bytes; the outputs of the bundle's model take {want} bytes: "
                        "another model or input shape")
    outputs, at = {}, 0
    for spec, dt, n in sizes:
        value = np.frombuffer(data, dtype=dt, count=n, offset=at).reshape(reference[spec["name"]].shape)
        outputs[spec["name"]] = dequantized(value, spec.get("quantization"))
        at += dt.itemsize * n
    return outputs


def _json_outputs(rf: ResultFile, reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    got: dict[str, DeviceOutput] = parse_trtexec_output(rf.doc, str(rf.path))
    outputs = {}
    for name, ref in reference.items():
        if name not in got:
            raise EvitError(f"{rf.path} has no output '{name}' (it has {', '.join(got)}): not this bundle's model")
        if got[name].shape != ref.shape:
            raise EvitError(f"{rf.path}: output '{name}' has shape {'x'.join(map(str, got[name].shape))}, the bundle's "
                            f"model gives {'x'.join(map(str, ref.shape))}: another model or input shape")
        outputs[name] = got[name].values.astype(np.float32)
    return outputs


def _golden_failure(log: Path | None) -> str:
    if log is None or not log.is_file():
        return "no output file"
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error|unknown|fail|invalid", line, re.IGNORECASE)]
    return (errors or lines or ["empty log"])[-1][:200]


def _correctness(bundle: Bundle, found: Found, device_name: str) -> tuple[list[dict[str, Any]], list[str]]:
    doc, tool = bundle.doc, bundle.tool
    by_name = {f.rel: f for kind in ("raw-output", "trtexec-output") for f in found.files.get(kind, [])}
    refs, outs, samples, sources, missing = [], [], [], [], []
    for g in doc["golden"]:
        reference = {name: np.load(confined(bundle.folder, spec["npy"])) for name, spec in g["reference"].items()}
        rf = by_name.get(g["device_output"]) or by_name.get(Path(g["device_output"]).name)
        if rf is None:
            missing.append(f"{g['label']}: {_golden_failure(found.golden_logs.get(g['stem']))}")
            continue
        outputs = _raw_outputs(bundle, rf, reference) if rf.kind == "raw-output" else _json_outputs(rf, reference)
        refs.append(reference)
        outs.append(outputs)
        samples.append(g["label"])
        sources.append(rf.rel)
    notes = [f"not checked on the device: {m}" for m in missing]
    if not outs:
        return [], notes
    precision = doc["run"].get("precision") or doc["artifact"]["precision"]
    fmt, path = ("trt-engine", doc["run"]["engine"]) if tool.name == "trtexec" else (doc["artifact"]["format"],
                                                                                       doc["artifact"]["path"])
    report = judge_outputs(bundle.manifest, Judged(path, doc["artifact"]["role"], fmt, precision, samples), refs,
                           outs, {"tool": tool.name, "device": device_name})
    return [report.to_dict() | {"device": device_name, "sources": sources, "missing": missing,
                                "reference": "PyTorch fp32 on the golden inputs (golden/reference), the export's "
                                             "tolerance for " + precision}], notes


# ---------------------------------------------------------------------------------------------- the report


def _layers(found: Found, timing_file: ResultFile | None) -> dict[str, Any] | None:
    layers: list[LayerTime] | None = None
    iterations, source = None, None
    if (rf := found.one("trtexec-profile")) is not None:
        iterations, layers = parse_trtexec_profile(rf.doc, str(rf.path))
        source = rf.rel
    elif (rf := found.one("op-profile")) is not None:
        layers, source = parse_op_profile(rf.text, str(rf.path)), rf.rel
    elif timing_file is not None and timing_file.text and "Operator-wise Profiling Info" in timing_file.text:
        layers, source = parse_op_profile(timing_file.text, str(timing_file.path)), timing_file.rel
    if not layers:
        return None
    top = sorted(layers, key=lambda layer: layer.avg_ms, reverse=True)[:TOP_LAYERS]
    return {"source": source, "iterations": iterations, "layers": len(layers),
            "total_avg_ms": float(sum(layer.avg_ms for layer in layers)),
            "top": [{"name": t.name, "type": t.kind, "avg_ms": t.avg_ms, "percent": t.percent,
                     "median_ms": t.median_ms} for t in top]}


def _timing(bundle: Bundle, found: Found) -> tuple[Timing | None, ResultFile | None]:
    tool = bundle.tool.name
    rf = found.one(TIMING_KINDS[tool])
    if rf is None:
        return None, None
    if tool == "benchmark_model":
        return parse_benchmark_log(rf.text, str(rf.path)), rf
    if tool == "onnxruntime_perf_test":
        return parse_perf_test_log(rf.text, str(rf.path)), rf
    # Older trtexec exports include the warm-up iterations; trtexec tells them apart by time (before --warmUp ms).
    # The bundle's warm-up is known only for the output of its own run.sh (a results folder with its BUNDLE_ID):
    # any other file is counted as written.
    from_run_sh = found.one("bundle-id") is not None
    warmup = bundle.doc["run"].get("warmup_ms") if from_run_sh else None
    return parse_trtexec_times(rf.doc, str(rf.path), warmup), rf


def default_device_name(bundle_doc: dict[str, Any]) -> str:
    return f"unnamed {bundle_doc['device']} device (name it with --device-name)"


def import_results(results: str | Path, bundle_dir: str | Path, device_name: str | None = None,
                   require_signature: TrustSpec = None) -> Report:
    """Parse ``results`` (a results folder of ``run.sh``, or one result file) against the bundle: one-line errors
    for files that are not the tool's output or not from this bundle; returns the report (the typed report model
    every benchmark writes). ``require_signature``: the key the bundled export must be signed with (default:
    ``EVIT_DEPLOY_REQUIRE_SIGNATURE``)."""
    bundle = read_bundle(bundle_dir, require_signature)
    doc = bundle.doc
    device_name = " ".join((device_name or default_device_name(doc)).split())[:120]
    tool = bundle.tool
    found = _collect(Path(results), tool.name)
    timing, timing_file = _timing(bundle, found)
    checks = _checks(bundle, found, timing)
    correctness, notes = _correctness(bundle, found, device_name)
    layers = _layers(found, timing_file)
    run, settings = doc["run"], doc["settings"]
    batch = int(run.get("batch") or 1)
    rows = []
    if timing is not None:
        fmt, path = ("trt-engine", run["engine"]) if tool.name == "trtexec" else (doc["artifact"]["format"],
                                                                                   doc["artifact"]["path"])
        lat = timing.latency_ms
        rows.append(Row(
            model=doc["model"], backend=tool.name, format=fmt, precision=run.get("precision") or
            doc["artifact"]["precision"], batch=batch, artifact=path, device=device_name,
            latency=Stats(n=timing.count, median=lat.get("median"), mean=lat.get("mean"), p90=lat.get("p90"),
                          p99=lat.get("p99"), min=lat.get("min"), max=lat.get("max"), std=lat.get("std")),
            extra={"statistic": timing.statistic, "device_class": doc["device_class"],
                   "host_device_copies": ("included: latencyMs = H2D + GPU compute + D2H" if tool.name == "trtexec"
                                          else "n/a: the phone's CPU reads the inputs in place"),
                   "memory_mb": timing.memory_mb, "details": timing.details,
                   "source_file": timing_file.rel, "source_sha256": timing_file.sha256}))
    else:
        notes.append(f"latency not measured: the results hold no {tool.name} timing output")
    threads = timing.facts.get("threads") if timing else None
    threads = threads or (settings["threads"] if tool.name != "trtexec" else None)
    where = (f"measured on {device_name} by {tool.description}; imported by evit-deploy bench import, not "
             "measured by evit-deploy")
    report = Report(
        kind="import", title=f"{doc['model']} on {device_name}",
        machine=Machine(label=device_name, cpu=device_name, threads=threads, where=where),
        rows=rows, model=doc["model"], task=doc["task"], target=doc["target"], export=doc["export"]["source"],
        input_size=doc["input_size"], measured=task_spec(doc["task"]).measured,
        settings={"batches": [batch], "runs": timing.count if timing and timing.count else settings["runs"],
                  "warmup": (f"{run['warmup_ms']} ms" if tool.name == "trtexec" else run.get("warmup_runs")),
                  "threads": threads, "tool": tool.name, "taskset": settings.get("taskset"),
                  "xnnpack": settings.get("xnnpack") if tool.name != "trtexec" else None,
                  "commands": [s["bash"] for s in run["steps"] if "timing" in s["tags"]]},
        versions={"evit-deploy": __version__, "bundle made by evit-deploy": doc["evit_deploy"]},
        references=[Reference(r["model"], r["device"], r["device_name"], r["engine"], r["precision"], r.get("batch"),
                              r["metric"], r["value"], r["source"], r.get("data_transfer", ""))
                    for r in hardware_rows(doc["model"], device_class=doc["device_class"])],
        skipped=notes,
        notes=["The paper's phone figures are TFLite fp32 at batch 1 on a Snapdragon 8Gen1's CPU; its Jetson figures "
               "TensorRT fp16 at batch 1 with data transfer included, at maximum clocks: compare like with like."],
        sections={
            "device_class": doc["device_class"],
            "published_model": model_facts(doc["model"]),
            "imported": {"bundle": str(bundle.folder), "bundle_id": doc["bundle_id"], "tool": tool.name,
                         "device": device_name, "results": str(results), "checks": checks,
                         "files": {f.rel: f.sha256 for group in found.files.values() for f in group},
                         "ignored": found.ignored,
                         "note": "device measurements imported from the tool's own output; evit-deploy measured "
                                 "nothing"},
            "layers": layers,
            "correctness": correctness,
        },
    )
    return report


def report_name(report: Report) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", report.machine.label).strip("-")[:60] or "device"
    return f"{report.model}-{slug}"
