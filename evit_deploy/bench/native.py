"""The device's own benchmark tools, run on the same file as a row, with the same threads, batch, shape and precision,
in the same alternation: OpenVINO ``benchmark_app`` (in the ``openvino`` wheel), LiteRT ``litert-benchmark`` (in
``ai-edge-litert``; writes JSON) and ``trtexec`` (TensorRT; timed as the model's authors time it). Their output is
read with the parsers ``bench import`` uses (:mod:`evit_deploy.device.parsers`).

Each run of a tool is one block: it loads the file, warms up and times its iterations, and its median is one value.
A tool that is missing, crashes or prints something else gives the row a status and one line, never an error.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..device.parsers import (
    Timing,
    load_json,
    parse_benchmark_app_log,
    parse_litert_benchmark_json,
    parse_trtexec_times,
)
from ..errors import EvitError, one_line

AGREEMENT = (0.9, 1.1)  # ours / native outside this range is flagged
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
TRT_WARMUP_MS = 200


@dataclass(frozen=True)
class NativeTarget:
    """The artifact a row ran, as the row ran it."""

    path: Path
    format: str
    batch: int
    input_name: str
    input_shape: tuple[int, ...]
    threads: int
    settings: dict[str, Any] = field(default_factory=dict)  # the runtime's facts of our row

    @property
    def shape_text(self) -> str:
        return ",".join(map(str, self.input_shape))


@dataclass(frozen=True)
class NativeTool:
    """A vendor's benchmark tool: how to call it for ``runs`` iterations, how to read what it wrote, what it was
    told, and how its timed call differs from ours (shown when a row disagrees with it)."""

    name: str
    formats: tuple[str, ...]
    executable: str
    comes_with: str
    command: Callable[[str, NativeTarget, int, Path], list[str]]  # (executable, target, runs, scratch dir)
    read: Callable[[subprocess.CompletedProcess, Path], Timing]
    told: Callable[[NativeTarget], dict[str, Any]]
    differences: tuple[str, ...] = ()

    def find(self) -> str | None:
        """The tool on the PATH, or beside this Python (a virtual environment's bin folder, not activated)."""
        found = shutil.which(self.executable)
        if found:
            return found
        beside = Path(sys.executable).parent / self.executable
        return str(beside) if beside.is_file() else None


def _ov_precision(target: NativeTarget) -> str:
    ran = target.settings.get("inference_precision", "fp32")
    return OV_PRECISION.get(ran, "f32")


def _benchmark_app(exe: str, t: NativeTarget, runs: int, scratch: Path) -> list[str]:
    streams = str(t.settings.get("streams") or 1)  # as many streams as our compiled model has (1 for LATENCY)
    return [exe, "-m", str(t.path), "-d", "CPU", "-hint", "none", "-nstreams", streams, "-nthreads", str(t.threads),
            "-api", "sync", "-niter", str(runs), "-shape", f"{t.input_name}[{t.shape_text}]",
            "-infer_precision", _ov_precision(t)]


def _litert(exe: str, t: NativeTarget, runs: int, scratch: Path) -> list[str]:
    return [exe, "--model", str(t.path), "--num_threads", str(t.threads), "--num_runs", str(runs),
            "--warmup_runs", "3", "--result_json", str(scratch / "result.json")]


def _trtexec(exe: str, t: NativeTarget, runs: int, scratch: Path) -> list[str]:
    shape = "x".join(map(str, t.input_shape))
    return [exe, f"--loadEngine={t.path}", "--separateProfileRun", f"--iterations={runs}", "--duration=0",
            f"--warmUp={TRT_WARMUP_MS}", f"--shapes={t.input_name}:{shape}", f"--exportTimes={scratch / 'times.json'}"]


def _scratch_file(scratch: Path, name: str, tool: str) -> str:
    path = scratch / name
    if not path.is_file():
        raise EvitError(f"{tool} wrote no {name}")
    return path.read_text()


NATIVE_TOOLS: dict[str, NativeTool] = {
    tool.name: tool for tool in (
        NativeTool(
            "benchmark_app", ("openvino",), "benchmark_app", "the openvino wheel", _benchmark_app,
            lambda proc, scratch: parse_benchmark_app_log(proc.stdout, "benchmark_app output"),
            lambda t: {"api": "sync", "hint": "none", "streams": t.settings.get("streams") or 1, "threads": t.threads,
                       "infer_precision": _ov_precision(t), "shape": list(t.input_shape)},
            ("benchmark_app fills its input tensors once and never reads the outputs back; our call hands the input "
             "over and copies the outputs (see the harness overhead)",
             "benchmark_app compiles with -hint none -nstreams 1; we compile with PERFORMANCE_HINT=LATENCY")),
        NativeTool(
            "litert-benchmark", ("tflite",), "litert-benchmark", "the ai-edge-litert wheel", _litert,
            lambda proc, scratch: parse_litert_benchmark_json(
                load_json(_scratch_file(scratch, "result.json", "litert-benchmark"), "litert-benchmark JSON"),
                "litert-benchmark JSON"),
            lambda t: {"threads": t.threads, "accelerator": "CPU (XNNPACK)", "warmup_runs": 3},
            ("litert-benchmark runs the CompiledModel API with its own buffers; we run the Interpreter API with "
             "XNNPACK and copy the outputs",)),
        NativeTool(
            "trtexec", ("trt-engine",), "trtexec", "TensorRT (JetPack, NVIDIA's packages)", _trtexec,
            lambda proc, scratch: parse_trtexec_times(
                load_json(_scratch_file(scratch, "times.json", "trtexec"), "trtexec --exportTimes"),
                "trtexec --exportTimes", TRT_WARMUP_MS),
            lambda t: {"iterations": "per block", "separateProfileRun": True, "duration": 0,
                       "warmUp_ms": TRT_WARMUP_MS, "shape": list(t.input_shape)},
            ("trtexec's latency is H2D + compute + D2H from CUDA events; ours is the host's wall time of the call",)),
    )
}


def tool_for(fmt: str) -> NativeTool | None:
    return next((t for t in NATIVE_TOOLS.values() if fmt in t.formats), None)


def first_error_line(text: str) -> str:
    """The line of a tool's output that says what went wrong (the first naming an error, else the last line)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        if any(word in line for word in ("ERROR", "Error", "error", "Exception", "Traceback", "FAILED")):
            if not line.startswith("Traceback"):
                return one_line(line, 200)
    return one_line(lines[-1], 200) if lines else "no output"


class NativeFailure(Exception):
    """A run of a native tool that failed or printed what we cannot read; ``status`` says which."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class NativeRunner:
    """A native tool as a contender of the alternation: each :meth:`block` is one run of the tool."""

    def __init__(self, tool: NativeTool, executable: str, target: NativeTarget, runs: int,
                 timeout_s: float) -> None:
        self.tool, self.executable, self.target = tool, executable, target
        self.runs, self.timeout_s = runs, timeout_s

    def command(self, scratch: Path) -> list[str]:
        return self.tool.command(self.executable, self.target, self.runs, scratch)

    def block(self) -> list[float]:
        """One run of the tool; its median in ms (raises :class:`NativeFailure`)."""
        with tempfile.TemporaryDirectory(prefix="evit-native-") as scratch:
            try:
                proc = subprocess.run(self.command(Path(scratch)), capture_output=True, text=True,
                                      timeout=self.timeout_s, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise NativeFailure("failed", f"{self.tool.name} did not finish in {self.timeout_s:.0f} s") from None
            except OSError as exc:
                raise NativeFailure("failed", f"{self.tool.name} could not be started ({one_line(exc, 120)})"
                                    ) from None
            if proc.returncode != 0:
                raise NativeFailure("failed", f"{self.tool.name} exited {proc.returncode}: "
                                              f"{first_error_line(proc.stderr + proc.stdout)}")
            try:
                timing = self.tool.read(proc, Path(scratch))
            except (EvitError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise NativeFailure("unparsed", f"{one_line(exc, 160)} (it printed: "
                                                f"{first_error_line(proc.stdout + proc.stderr)})") from None
        return [timing.headline_ms]


    def describe(self) -> dict[str, Any]:
        """What the report says of the tool: its name, one run's command line (scratch files as OUT), what it was
        told, and how its timed call differs from ours."""
        return {"tool": self.tool.name, "command": [Path(self.executable).name, *self.command(Path("OUT"))[1:]],
                "told": self.tool.told(self.target), "differences": list(self.tool.differences)}
