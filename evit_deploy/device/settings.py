"""Device bundle settings (defaults in one place) and the device kinds a bundle is written for."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import EvitError

_MASK = re.compile(r"[0-9a-fA-F]{1,16}")
_DEVICE_DIR = re.compile(r"/[A-Za-z0-9._/-]+")


@dataclass
class DeviceSettings:
    """How the device tools run. ``runs``/``warmup_runs``: timed and warm-up inferences (benchmark_model
    ``--num_runs``/``--warmup_runs``, onnxruntime_perf_test ``-r``, trtexec ``--iterations``); ``warmup_ms``:
    trtexec ``--warmUp`` (milliseconds); ``taskset``: hex CPU mask to pin the phone run to (its big cores)."""

    threads: int = 4
    runs: int = 100
    warmup_runs: int = 10
    warmup_ms: int = 500
    xnnpack: bool = True
    op_profiling: bool = False
    taskset: str | None = None
    device_dir: str = "/data/local/tmp/evit-deploy"

    def check(self) -> DeviceSettings:
        if self.threads < 1 or self.runs < 1 or self.warmup_runs < 0 or self.warmup_ms < 0:
            raise EvitError("device settings need threads >= 1, runs >= 1, warm-up >= 0")
        if self.taskset is not None and not _MASK.fullmatch(self.taskset):
            raise EvitError(f"--taskset takes a hexadecimal CPU mask such as f0 (cores 4-7); got {self.taskset!r}")
        if not _DEVICE_DIR.fullmatch(self.device_dir) or ".." in self.device_dir:
            raise EvitError(f"--device-dir must be an absolute path of letters, digits, '.', '_', '-', '/'; "
                            f"got {self.device_dir!r}")
        return self


@dataclass(frozen=True)
class DeviceKind:
    """A device a bundle is written for: the published device class it is compared with (latency/published.yaml
    ``device_classes``) and the artifact formats its tools run, in order of preference."""

    name: str
    device_class: str
    formats: tuple[str, ...]
    description: str


DEVICES: dict[str, DeviceKind] = {
    "android": DeviceKind("android", "phone", ("tflite", "ort"), "an Android phone over adb"),
    "jetson": DeviceKind("jetson", "jetson", ("onnx",), "an NVIDIA Jetson"),
}


def device_kind(name: str) -> DeviceKind:
    if name not in DEVICES:
        raise EvitError(f"unknown device '{name}' (known: {', '.join(DEVICES)})")
    return DEVICES[name]
