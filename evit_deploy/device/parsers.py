"""Parsers for what the device tools print and write. Every number comes from the file; what a tool does not
report stays ``None``; a file that is malformed, truncated or not from the tool is a one-line error naming it.
Nothing is ever filled in.

The formats, from the tools' sources:

- LiteRT ``benchmark_model`` log (tensorflow/lite/tools/benchmark/benchmark_model.cc): each ``Run()`` (warm-up,
  then the timed runs) logs a ``Stat`` as ``count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732
  std=1929`` (µs; tensorflow/core/util/stats_calculator.h ``Stat::OutputToStream``, which prints
  ``count=N curr=C(all same)`` when every run took the same time); then ``Inference timings in us: Init: I,
  First inference: F, Warmup (avg): W, Inference (avg): A`` (releases before 2.3: ``Average inference timings
  in us: Warmup: W, Init: I, Inference: A``). Memory: ``Peak memory footprint (MB): init=X overall=Y`` (older),
  ``Memory footprint delta from the start of the tool (MB): init=X overall=Y`` and ``Overall peak memory
  footprint (MB) via periodic monitoring: P`` (newer, with ``--report_peak_memory_footprint``). Newer builds
  prefix log lines with ``INFO: ``. Parameters are logged as ``Graph: [path]``, ``Num threads: [4]``.
- Op profiling (``--enable_op_profiling``, to ``--profiling_output_csv_file`` or the log;
  tools/benchmark/profiling_listener.cc, core/util/stats_calculator.cc): a section ``Operator-wise Profiling Info
  for Regular Benchmark Runs:``, then ``==== Run Order ====``, a header — CSV ``node type, start, first, avg_ms,
  %, cdf%, mem KB, times called, name`` (newer: no ``start``), or the tab-separated ``[node type] [start] [first]
  [avg ms] [%] [cdf%] [mem KB] [times called] [Name]`` — and one row per op.
- ``onnxruntime_perf_test`` (onnxruntime/test/perftest/performance_runner.cc): ``Total inference requests: N``,
  ``Average inference time cost: X ms`` (newer: ``Average inference time cost total: X ms``), ``Min Latency: X s``,
  ``Max Latency``, ``P50/P90/P95/P99/P999 Latency: X s`` (newer releases), ``First inference time cost: N ms``,
  ``Peak working set size: N bytes``.
- ``trtexec --exportTimes`` (samples/common/sampleReporting.cpp ``exportJSONTrace``): a JSON list with one record
  per iteration: ``startComputeMs``, ``endComputeMs``, ``computeMs``, ``latencyMs`` (= H2D + compute + D2H), and
  ``h2dMs``/``d2hMs`` with ``startEnqMs``... (TensorRT 8+) or ``inMs``/``outMs`` (TensorRT 7, tracer.py);
  ``endToEndMs`` up to TensorRT 8. Before TensorRT 10 the list includes the warm-up iterations; trtexec's own
  summary drops records whose ``startComputeMs`` is before the warm-up time, and so does this parser when it is
  given that time.
- ``trtexec --exportProfile`` (``Profiler::exportJSONProfile``): ``[{"count": N}, {"name", "timeMs",
  "averageMs", ["medianMs",] "percentage"}, ...]``.
- ``trtexec --exportOutput`` (``exportJSONOutput``): ``[{"name": "logits", "dimensions": "1x1000", "values":
  [...]}]``; values are printed by C++ streams, so a non-finite value appears as a bare ``nan``/``inf``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvitError, one_line

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PREFIX = r"^(?:[A-Z]+: )?"  # TFLITE_LOG's "INFO: " in newer builds
_STAT = re.compile(_PREFIX + r"(count=\d+\b.*)$", re.MULTILINE)
_TIMINGS = re.compile(rf"Inference timings in us: Init: ({NUM}), First inference: ({NUM}), "
                      rf"Warmup \(avg\): ({NUM}), Inference \(avg\): ({NUM})")
_TIMINGS_OLD = re.compile(rf"Average inference timings in us: Warmup: ({NUM}), Init: ({NUM}), Inference: ({NUM})")
_MEMORY = {
    "init_mb": re.compile(rf"(?:Peak memory footprint|Memory footprint delta from the start of the tool) "
                          rf"\(MB\): init=({NUM})"),
    "overall_mb": re.compile(rf"(?:Peak memory footprint|Memory footprint delta from the start of the tool) "
                             rf"\(MB\): init={NUM} overall=({NUM})"),
    "peak_mb": re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUM})"),
}
_PARAMS = {"graph": re.compile(r"Graph: \[([^\]]*)\]"), "threads": re.compile(r"Num threads: \[(-?\d+)\]"),
           "model_size_mb": re.compile(rf"The input model file size \(MB\): ({NUM})")}
_SHA_LINE = re.compile(r"^([0-9a-f]{64})\s+\*?(\S.*)$")
_NONFINITE = re.compile(r"(?<![\w\"])(-?)(nan|inf)(?![\w\"])", re.IGNORECASE)


@dataclass
class Timing:
    """Latency as a device tool reported it. ``latency_ms``: median, mean, p90, p99, min, max, std (None where
    the tool gives no such figure); ``statistic``: the headline figure (median where the tool gives one)."""

    tool: str
    source: str
    count: int | None  # None: the tool's output does not say
    latency_ms: dict[str, float | None]
    statistic: str
    details: dict[str, Any] = field(default_factory=dict)
    memory_mb: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def headline_ms(self) -> float:
        return self.latency_ms[self.statistic]


@dataclass
class LayerTime:
    name: str
    kind: str | None
    avg_ms: float
    percent: float | None = None
    median_ms: float | None = None


@dataclass
class DeviceOutput:
    name: str
    shape: tuple[int, ...]
    values: np.ndarray


def _ms(text: str, per: int) -> float:
    """A printed number converted to milliseconds, rounded once (``per``: units per millisecond, 1000 for µs)."""
    return float(Decimal(text) / per)


def _error(source: str, problem: str) -> EvitError:
    return EvitError(f"{source}: {problem}")


# ------------------------------------------------------------------------------------------- benchmark_model


def looks_like_benchmark_model(text: str) -> bool:
    return bool(_TIMINGS.search(text) or _TIMINGS_OLD.search(text) or
                ("Graph: [" in text and _STAT.search(text)) or "Running benchmark for at least" in text)


def _stat(line: str, source: str) -> dict[str, Decimal]:
    fields = dict(re.findall(rf"\b(count|first|curr|min|max|avg|std)=({NUM})", line))
    try:
        stat = {k: Decimal(v) for k, v in fields.items()}
    except InvalidOperation:
        raise _error(source, f"unreadable statistics line: {one_line(line, 100)}") from None
    if "avg" not in stat:
        if "curr" in stat and (stat["count"] == 1 or "(all same)" in line):  # every run took the same time
            stat.update(first=stat["curr"], min=stat["curr"], max=stat["curr"], avg=stat["curr"], std=Decimal(0))
        else:
            raise _error(source, f"incomplete statistics line: {one_line(line, 100)}")
    if not stat["min"] <= stat["avg"] <= stat["max"] or stat["count"] < 1:
        raise _error(source, f"inconsistent statistics line: {one_line(line, 100)}")
    return stat


def parse_benchmark_log(text: str, source: str) -> Timing:
    """A LiteRT ``benchmark_model`` log (see the module docstring): the timed runs' statistics and memory."""
    text = text.replace("\r\n", "\n")
    new, old = list(_TIMINGS.finditer(text)), list(_TIMINGS_OLD.finditer(text))
    ends = new or old
    if not ends:
        if looks_like_benchmark_model(text):
            raise _error(source, "the benchmark_model run did not finish (no 'Inference timings in us' line); see "
                                 "the end of the log for the tool's error")
        raise _error(source, "not a LiteRT benchmark_model log (no 'count=... avg=...' statistics and no "
                             "'Inference timings in us' line)")
    if len(ends) > 1:
        raise _error(source, f"holds {len(ends)} benchmark_model runs; import one run at a time")
    end = ends[0]
    stats = [m for m in _STAT.finditer(text, 0, end.start()) if "Timings (microseconds)" not in m.group(0)]
    timed = _stat(stats[-1].group(1), source) if stats else None
    warm = _stat(stats[-2].group(1), source) if len(stats) > 1 else None
    if new:
        init, first, warm_avg, inference = (Decimal(g) for g in end.groups())
    else:
        warm_avg, init, inference = (Decimal(g) for g in end.groups())
        first = warm["first"] if warm else None
    if timed is not None and abs(inference - timed["avg"]) > Decimal("1e-5") * max(abs(inference), Decimal(1)):
        raise _error(source, f"is inconsistent: 'Inference (avg)' {inference} differs from the timed runs' avg "
                             f"{timed['avg']}")
    # Without the timed runs' statistics line only the average is known: the rest stays empty.
    latency = {"median": None, "mean": _ms(str(inference), 1000), "p90": None, "p99": None,
               "min": _ms(str(timed["min"]), 1000) if timed else None,
               "max": _ms(str(timed["max"]), 1000) if timed else None,
               "std": _ms(str(timed["std"]), 1000) if timed else None}
    details = {"unit": "us", "timed_runs": {k: str(v) for k, v in timed.items()} if timed else None,
               "warmup_runs": {k: str(v) for k, v in warm.items()} if warm else None,
               "init_us": str(init), "first_inference_us": str(first) if first is not None else None,
               "warmup_avg_us": str(warm_avg), "inference_avg_us": str(inference)}
    memory = {key: float(m.group(1)) for key, rx in _MEMORY.items() if (m := rx.search(text))}
    facts = {key: m.group(1) for key, rx in _PARAMS.items() if (m := rx.search(text))}
    if "threads" in facts:
        facts["threads"] = int(facts["threads"])
    return Timing("benchmark_model", source, int(timed["count"]) if timed else None, latency, "mean", details,
                  memory, facts)


# --------------------------------------------------------------------------------------------- op profiling


def _column(name: str) -> str:
    return name.strip().strip("[]").strip().lower().replace(" ", "_")


def _numeric(token: str) -> bool:
    return bool(re.fullmatch(NUM + "%?", token.strip()))


def parse_op_profile(text: str, source: str) -> list[LayerTime]:
    """Per-op times of the regular runs from benchmark_model's op profiling (CSV file or the log's table)."""
    text = text.replace("\r\n", "\n")
    start = text.find("Operator-wise Profiling Info for Regular Benchmark Runs")
    section = text[start:] if start >= 0 else text
    lines = section.split("\n")
    head = next((i for i, line in enumerate(lines) if re.search(r"=+ Run Order =+", line)), None)
    if head is None or head + 1 >= len(lines):
        raise _error(source, "not a benchmark_model op profile (no 'Run Order' table of the regular runs)")
    header = lines[head + 1]
    sep = ", " if ", " in header and "\t" not in header.strip() else "\t"
    columns = [_column(c) for c in header.strip().split(sep.strip() or "\t") if c.strip()]
    if columns[:1] != ["node_type"] or columns[-1] != "name" or "avg_ms" not in columns:
        raise _error(source, f"unexpected op-profile header: {one_line(header, 100)}")
    numeric = columns[1:-1]
    layers = []
    for line in lines[head + 2:]:
        if not line.strip() or line.startswith("="):
            break
        tokens = [t.strip() for t in line.split(sep)]
        while tokens and not tokens[0]:
            tokens.pop(0)
        at = next((i for i in range(1, len(tokens) - len(numeric) + 1)
                   if all(_numeric(t) for t in tokens[i:i + len(numeric)])), None)
        if at is None:
            raise _error(source, f"unreadable op-profile row: {one_line(line, 100)}")
        values = {c: float(t.rstrip("%")) for c, t in zip(numeric, tokens[at:at + len(numeric)])}
        layers.append(LayerTime(sep.join(tokens[at + len(numeric):]).strip(), sep.join(tokens[:at]).strip(),
                                values["avg_ms"], values.get("%")))
    if not layers:
        raise _error(source, "the op profile's 'Run Order' table is empty")
    return layers


# ------------------------------------------------------------------------------------- onnxruntime_perf_test

_PERF = {"count": r"Total inference requests: (\d+)", "mean": rf"Average inference time cost(?: total)?: ({NUM}) ms",
         "min": rf"Min Latency: ({NUM}) s", "max": rf"Max Latency: ({NUM}) s", "median": rf"P50 Latency: ({NUM}) s",
         "p90": rf"P90 Latency: ({NUM}) s", "p99": rf"P99 Latency: ({NUM}) s",
         "first_ms": rf"First inference time cost: ({NUM}) ms", "session_s": rf"Session creation time cost: ({NUM}) s",
         "peak_bytes": r"Peak working set size: (\d+) bytes"}


def looks_like_perf_test(text: str) -> bool:
    return "Session creation time cost" in text or "Average inference time cost" in text


def parse_perf_test_log(text: str, source: str) -> Timing:
    """An ``onnxruntime_perf_test`` log: latency (the percentiles where this release prints them) and memory."""
    found = {key: m.group(1) for key, rx in _PERF.items() if (m := re.search(rx, text))}
    if "mean" not in found or "count" not in found:
        if looks_like_perf_test(text):
            raise _error(source, "the onnxruntime_perf_test run did not finish (no 'Average inference time cost')")
        raise _error(source, "not an onnxruntime_perf_test log (no 'Average inference time cost' line)")
    seconds = {k: float(Decimal(found[k]) * 1000) for k in ("min", "max", "median", "p90", "p99") if k in found}
    latency = {"median": seconds.get("median"), "mean": float(Decimal(found["mean"])), "p90": seconds.get("p90"),
               "p99": seconds.get("p99"), "min": seconds.get("min"), "max": seconds.get("max"), "std": None}
    memory = {"peak_working_set_mb": int(found["peak_bytes"]) / 2**20} if "peak_bytes" in found else {}
    details = {k: found[k] for k in ("first_ms", "session_s") if k in found}
    return Timing("onnxruntime_perf_test", source, int(found["count"]), latency,
                  "median" if latency["median"] is not None else "mean", details, memory)


# ----------------------------------------------------------------------------- benchmark_app, litert-benchmark

_BENCHMARK_APP = {"median": rf"Median:\s+({NUM}) ms", "mean": rf"Average:\s+({NUM}) ms", "min": rf"Min:\s+({NUM}) ms",
                  "max": rf"Max:\s+({NUM}) ms", "count": r"Count:\s+(\d+) iterations",
                  "throughput": rf"Throughput:\s+({NUM}) FPS", "first_ms": rf"First inference took ({NUM}) ms"}


def parse_benchmark_app_log(text: str, source: str) -> Timing:
    """OpenVINO ``benchmark_app`` output (tools/benchmark_tool): ``Count: N iterations``, then under ``Latency:``
    ``Median``, ``Average``, ``Min``, ``Max`` in ms, and ``Throughput: X FPS``."""
    found = {key: m.group(1) for key, rx in _BENCHMARK_APP.items() if (m := re.search(rx, text))}
    if "median" not in found:
        if "[ ERROR ]" in text:
            line = next(ln for ln in text.splitlines() if "[ ERROR ]" in ln)
            raise _error(source, f"benchmark_app failed: {one_line(line.split('[ ERROR ]', 1)[1], 200)}")
        raise _error(source, "not a benchmark_app report (no 'Median: ... ms' latency line)")
    latency = {"median": float(found["median"]), "mean": float(found["mean"]) if "mean" in found else None,
               "p90": None, "p99": None, "min": float(found["min"]) if "min" in found else None,
               "max": float(found["max"]) if "max" in found else None, "std": None}
    details = {k: found[k] for k in ("throughput", "first_ms") if k in found}
    return Timing("benchmark_app", source, int(found["count"]) if "count" in found else None, latency, "median",
                  details)


def parse_litert_benchmark_json(doc: Any, source: str) -> Timing:
    """``litert-benchmark --result_json`` (ai_edge_litert/tools/benchmark_litert_model.py): ``latency`` holds
    ``median_ms``, ``avg_ms``, ``min_ms``, ``max_ms``, ``std_ms``, ``p5_ms``, ``p95_ms``, ``num_runs``."""
    lat = doc.get("latency") if isinstance(doc, dict) else None
    if not isinstance(lat, dict) or not isinstance(lat.get("median_ms"), (int, float)):
        raise _error(source, "not a litert-benchmark result (no latency.median_ms)")
    number = {k: float(v) for k, v in lat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    latency = {"median": number["median_ms"], "mean": number.get("avg_ms"), "p90": None, "p99": None,
               "min": number.get("min_ms"), "max": number.get("max_ms"), "std": number.get("std_ms")}
    details = {k: doc[k] for k in ("accelerators", "num_threads", "fully_accelerated") if k in doc}
    details |= {k: number[k] for k in ("init_ms", "p5_ms", "p95_ms") if k in number}
    count = lat.get("num_runs")
    return Timing("litert-benchmark", source, int(count) if isinstance(count, int) else None, latency, "median",
                  details)


# ------------------------------------------------------------------------------------------------- trtexec


def load_json(text: str, source: str) -> Any:
    """JSON as trtexec writes it (bare nan/inf from C++ streams accepted); truncated files are a one-line error."""
    fixed = _NONFINITE.sub(lambda m: ("-Infinity" if m.group(1) else "Infinity") if m.group(2).lower() == "inf"
                           else "NaN", text)
    try:
        return json.loads(fixed)
    except ValueError as exc:
        raise _error(source, f"is truncated or not valid JSON ({exc})") from None


def _record_number(record: dict[str, Any], key: str, source: str, i: int) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _error(source, f"record {i} has no valid '{key}' ({value!r})")
    return float(value)


def parse_trtexec_times(doc: Any, source: str, warmup_ms: float | None = None) -> Timing:
    """``trtexec --exportTimes`` records: latency (H2D + compute + D2H) per iteration, warm-up dropped."""
    from ..bench.stats import summarize

    if not isinstance(doc, list) or not doc or not all(isinstance(r, dict) for r in doc):
        raise _error(source, "not a trtexec --exportTimes file (expected a non-empty list of per-iteration records)")
    if not all("latencyMs" in r and "computeMs" in r for r in doc):
        raise _error(source, "not a trtexec --exportTimes file (records without latencyMs/computeMs)")
    new_keys = "h2dMs" in doc[0]
    h2d, d2h = ("h2dMs", "d2hMs") if new_keys else ("inMs", "outMs")
    records = [r for r in doc if warmup_ms is None or _record_number(r, "startComputeMs", source, 0) >= warmup_ms]
    if not records:
        raise _error(source, f"every record starts before the {warmup_ms} ms warm-up: no timed iterations")
    series = {"latencyMs": [], "computeMs": [], h2d: [], d2h: []}
    if all("endToEndMs" in r for r in records):
        series["endToEndMs"] = []
    for i, r in enumerate(records):
        for key, values in series.items():
            values.append(_record_number(r, key, source, i))
    lat = series["latencyMs"]
    summary = summarize([lat])
    stats = {"median": summary.median, "mean": math.fsum(lat) / len(lat), "p90": summary.p90, "p99": summary.p99,
             "min": summary.min, "max": summary.max, "std": summary.std}
    rule = (f"records starting before the {warmup_ms} ms warm-up dropped (trtexec's own rule)" if warmup_ms is not None
            else "every record counted (warm-up unknown for a file not written by the bundle's run.sh)")
    details = {"key_set": "h2dMs/d2hMs (TensorRT 8+)" if new_keys else "inMs/outMs (TensorRT 7)",
               "records": len(doc), "warmup_records_dropped": len(doc) - len(records), "warmup_ms": warmup_ms,
               "warmup_rule": rule,
               "latency": "latencyMs = H2D + GPU compute + D2H per iteration (data transfer included)"}
    for key, values in series.items():
        details[key] = {"mean": math.fsum(values) / len(values), "median": float(np.median(values)),
                        "min": min(values), "max": max(values)}
    return Timing("trtexec", source, len(records), stats, "median", details)


def parse_trtexec_profile(doc: Any, source: str) -> tuple[int, list[LayerTime]]:
    """``trtexec --exportProfile``: (profiled iterations, per-layer times)."""
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], dict) or "count" not in doc[0]:
        raise _error(source, "not a trtexec --exportProfile file (expected [{\"count\": N}, layers...])")
    layers = []
    for i, entry in enumerate(doc[1:], start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _error(source, f"profile entry {i} has no layer name")
        avg = _record_number(entry, "averageMs", source, i)
        pct = entry.get("percentage")
        med = entry.get("medianMs")
        layers.append(LayerTime(entry["name"], None, avg, float(pct) if isinstance(pct, (int, float)) else None,
                                float(med) if isinstance(med, (int, float)) else None))
    return int(doc[0]["count"]), layers


def parse_trtexec_output(doc: Any, source: str) -> dict[str, DeviceOutput]:
    """``trtexec --exportOutput``: every output tensor by name (values may hold NaN/Inf: the gate reports them)."""
    if not isinstance(doc, list) or not doc:
        raise _error(source, "not a trtexec --exportOutput file (expected a list of output tensors)")
    outputs = {}
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict) or not {"name", "dimensions", "values"} <= set(entry):
            raise _error(source, f"output {i} lacks name/dimensions/values")
        try:
            shape = tuple(int(d) for d in str(entry["dimensions"]).split("x") if d != "")
            values = np.asarray(entry["values"], dtype=np.float64)
        except (ValueError, TypeError):
            raise _error(source, f"output {entry.get('name')!r} has unreadable dimensions or values") from None
        if values.ndim != 1 or values.size != int(np.prod(shape)):
            raise _error(source, f"output {entry['name']!r} has {values.size} values for dimensions "
                                 f"{entry['dimensions']}: truncated or not from trtexec")
        outputs[entry["name"]] = DeviceOutput(entry["name"], shape, values.reshape(shape))
    return outputs


# ------------------------------------------------------------------------------------------------- others


def parse_sha_file(text: str) -> dict[str, str]:
    """``sha256sum`` output: {file name: digest}."""
    return {Path(m.group(2).strip()).name: m.group(1) for line in text.splitlines()
            if (m := _SHA_LINE.match(line.strip()))}


# ---------------------------------------------------------------------------------------------- detection

# kind -> the device tool whose output it is (None: any tool)
KIND_TOOLS: dict[str, str | None] = {
    "benchmark_model-log": "benchmark_model", "op-profile": "benchmark_model",
    "perf-test-log": "onnxruntime_perf_test", "trtexec-times": "trtexec", "trtexec-profile": "trtexec",
    "trtexec-output": "trtexec", "sha256": None, "bundle-id": None, "raw-output": None,
}


def sniff(path: Path, text: str | None) -> tuple[str | None, Any]:
    """(kind, parsed JSON or None) of a result file from its content, or (None, None) when it is none of ours.
    A file that starts like JSON but does not parse is a one-line error (a truncated trtexec export)."""
    if path.suffix == ".bin":
        return "raw-output", None
    if text is None:
        return None, None
    if path.name == "BUNDLE_ID" and re.fullmatch(r"[0-9a-f]{16}\s*", text):
        return "bundle-id", None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        doc = load_json(text, str(path))
        if isinstance(doc, list) and doc and isinstance(doc[0], dict):
            if set(doc[0]) == {"count"}:
                return "trtexec-profile", doc
            if "latencyMs" in doc[0] or "computeMs" in doc[0]:
                return "trtexec-times", doc
            if {"name", "dimensions", "values"} <= set(doc[0]):
                return "trtexec-output", doc
        return None, doc
    if looks_like_benchmark_model(text):
        return "benchmark_model-log", None
    if "Operator-wise Profiling Info" in text or re.search(r"^node type, ", text, re.MULTILINE):
        return "op-profile", None
    if looks_like_perf_test(text):
        return "perf-test-log", None
    if parse_sha_file(text):
        return "sha256", None
    return None, None
