"""Android phones over ``adb``: LiteRT ``benchmark_model`` for ``.tflite`` exports, ``onnxruntime_perf_test`` for
``.ort`` exports (mobile-cpu-ort).

Flags follow the tools' documentation: tensorflow/lite/tools/benchmark/README.md and benchmark_model.cc /
benchmark_tflite_model.cc (``--graph``, ``--num_threads``, ``--use_xnnpack``, ``--warmup_runs``, ``--num_runs``,
``--report_peak_memory_footprint``, ``--enable_op_profiling``, ``--profiling_output_csv_file``,
``--input_layer``/``--input_layer_shape``/``--input_layer_value_files``, ``--output_filepath``; ``taskset`` for the
big cores), and onnxruntime/test/perftest (``-m times -r N -x THREADS -e PROVIDER -I``).
"""

from __future__ import annotations

import shlex

from .steps import Step, Var
from .tools import BundleContext, DeviceTool, register_tool, shape_text

PREBUILT_BENCHMARK_MODEL = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/"
                            "tools/nightly/latest/android_aarch64_benchmark_model")
MEASUREMENT_DOCS = "https://ai.google.dev/edge/litert/models/measurement"


def _shell(*args: str) -> str:
    """One device shell command line (every argument quoted for the device's shell)."""
    return " ".join(shlex.quote(a) for a in args)


class _AdbTool(DeviceTool):
    device = "android"
    binary = ""  # file name of the tool on the device
    runs_golden = False  # whether run.sh feeds the golden inputs to the tool

    def binary_path(self, ctx: BundleContext) -> str:
        return f"{ctx.settings.device_dir}/{self.binary}"

    def model_path(self, ctx: BundleContext) -> str:
        return f"{ctx.device_dir}/{ctx.artifact.path.rsplit('/', 1)[-1]}"

    def common_steps(self, ctx: BundleContext) -> list[Step]:
        """Make the device folder, push the tool (when given), the model and the golden inputs, hash the model."""
        dev = ctx.device_dir
        steps = [
            Step(["adb", "shell", _shell("mkdir", "-p", f"{dev}/golden", f"{dev}/out")], "make the device folder"),
            Step(["adb", "push", Var(self.variable), self.binary_path(ctx)], f"push {self.binary}", when=self.variable),
            Step(["adb", "shell", _shell("chmod", "755", self.binary_path(ctx))], f"make {self.binary} executable",
                 when=self.variable),
            Step(["adb", "push", ctx.artifact_path, self.model_path(ctx)], f"push {ctx.artifact.path}"),
        ]
        if self.runs_golden:
            for g in ctx.golden:
                for name, spec in g["inputs"].items():
                    steps.append(Step(["adb", "push", spec["bin"], f"{dev}/golden/{g['stem']}.{name}.bin"],
                                      f"push golden input {g['stem']} ({name})"))
        steps.append(Step(["adb", "shell", _shell("sha256sum", self.model_path(ctx))],
                          "sha256 of the model on the device (bench import checks it)", log="device-sha256.txt"))
        return steps

    def pinned(self, ctx: BundleContext, *command: str) -> str:
        prefix = ("taskset", ctx.settings.taskset) if ctx.settings.taskset else ()
        return _shell(*prefix, *command)

    def setup(self, ctx: BundleContext) -> list[str]:
        return ['ADB="${ADB:-adb}"', f'{self.variable}="${{{self.variable}:-}}"']


@register_tool
class BenchmarkModel(_AdbTool):
    name = "benchmark_model"
    format = "tflite"
    outputs = "raw"
    runs_golden = True
    binary = "benchmark_model"
    variable = "BENCHMARK_MODEL"
    timing_log = "benchmark_model.log"
    description = "LiteRT benchmark_model (TFLite)"

    def flags(self, ctx: BundleContext) -> list[str]:
        s = ctx.settings
        return [f"--graph={self.model_path(ctx)}", f"--num_threads={s.threads}",
                f"--use_xnnpack={'true' if s.xnnpack else 'false'}"]

    def prepare(self, ctx: BundleContext) -> None:
        ctx.facts.update({"binary": self.binary_path(ctx), "device_dir": ctx.device_dir,
                          "model_on_device": self.model_path(ctx), "batch": ctx.manifest.batch.size,
                          "threads": ctx.settings.threads, "xnnpack": ctx.settings.xnnpack,
                          "warmup_runs": ctx.settings.warmup_runs, "runs": ctx.settings.runs,
                          "taskset": ctx.settings.taskset, "op_profiling": ctx.settings.op_profiling})

    def steps(self, ctx: BundleContext) -> list[Step]:
        s, dev = ctx.settings, ctx.device_dir
        steps = self.common_steps(ctx)
        timing = [self.binary_path(ctx), *self.flags(ctx), f"--warmup_runs={s.warmup_runs}", f"--num_runs={s.runs}",
                  "--report_peak_memory_footprint=true"]
        if s.op_profiling:
            timing += ["--enable_op_profiling=true", f"--profiling_output_csv_file={dev}/out/op_profile.csv"]
        steps.append(Step(["adb", "shell", self.pinned(ctx, *timing)],
                          f"time {ctx.artifact.path}: {s.runs} runs after {s.warmup_runs} warm-up runs",
                          log=self.timing_log, tags=("timing",)))
        if s.op_profiling:
            steps.append(Step(["adb", "pull", f"{dev}/out/op_profile.csv", "results/op_profile.csv"],
                              "pull the per-op profile (CSV)"))
        for g in ctx.golden:
            names = ",".join(g["inputs"])
            shapes = ":".join(shape_text(spec["shape"], ",") for spec in g["inputs"].values())
            files = ",".join(f"{name}:{dev}/golden/{g['stem']}.{name}.bin" for name in g["inputs"])
            run = [self.binary_path(ctx), *self.flags(ctx), f"--input_layer={names}", f"--input_layer_shape={shapes}",
                   f"--input_layer_value_files={files}", f"--output_filepath={dev}/out/{g['stem']}.out.bin",
                   "--warmup_runs=0", "--num_runs=1", "--min_secs=0", "--warmup_min_secs=0"]
            steps.append(Step(["adb", "shell", _shell(*run)], f"golden input {g['label']}",
                              log=f"golden/{g['stem']}.log", optional=True, tags=("golden",)))
            pulled = f"results/{self.output_file(g['stem'])}"
            steps.append(Step(["adb", "pull", f"{dev}/out/{g['stem']}.out.bin", pulled],
                              f"pull the outputs of {g['label']}", optional=True, tags=("golden",)))
        return steps

    def output_file(self, stem: str) -> str:
        return f"golden/{stem}.out.bin"

    def header(self, ctx: BundleContext) -> list[str]:
        return [f"Usage: {self.variable}=/path/to/android_aarch64_benchmark_model bash run.sh",
                "  ANDROID_SERIAL=<serial> picks the phone when several are attached; ADB=/path/to/adb overrides adb.",
                f"  Without {self.variable}, {self.binary_path(ctx)} must already be on the phone.",
                f"  Prebuilt binary: {PREBUILT_BENCHMARK_MODEL}"]

    def readme(self, ctx: BundleContext) -> str:
        s = ctx.settings
        pin = (f"pinned with `taskset {s.taskset}`" if s.taskset
               else "not pinned (make the bundle with `--taskset MASK` to pin it to the big cores)")
        return f"""## The tool: LiteRT `benchmark_model`

Get the prebuilt Android arm64 binary of LiteRT's benchmark tool (nightly build, documented in LiteRT's
performance-measurement guide, {MEASUREMENT_DOCS}):

```bash
curl -L -o android_aarch64_benchmark_model {PREBUILT_BENCHMARK_MODEL}
BENCHMARK_MODEL=$PWD/android_aarch64_benchmark_model bash run.sh      # ANDROID_SERIAL=<serial> for one phone
evit-deploy bench import results --bundle . --device-name "Galaxy S23 (Snapdragon 8 Gen 2)"
```

`run.sh` pushes the binary, `{ctx.artifact_path}` and the golden inputs to `{ctx.device_dir}`, then

1. times the model: {s.runs} runs after {s.warmup_runs} warm-up runs, {s.threads} threads, XNNPACK
   {'on' if s.xnnpack else 'off'}, peak memory reported, {pin}{', per-op profile written as CSV' if s.op_profiling
   else ''} → `results/{self.timing_log}`;
2. runs every golden input once with `--input_layer_value_files` and writes the model's outputs with
   `--output_filepath` → `results/golden/<sample>.out.bin` (raw output tensors in order, stored dtype).
   `--output_filepath` exists in recent benchmark_model builds (the nightly one); an older binary rejects it, the
   golden step only warns, and `bench import` then reports no correctness row instead of inventing one.

Pinning: `taskset MASK` runs the tool on the cores of the hexadecimal mask (LiteRT's benchmark README
recommends it to reduce variance). The big cores differ per SoC: read
`/sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq` on the phone (for a 1+3+4 core SoC such as the
Snapdragon 8 Gen 1, cores 4-7 are the big ones: mask `f0`).

## LiteRT's own accuracy/diff tools on the golden inputs

- The golden check above **is** LiteRT's path for real inputs: `benchmark_model --input_layer_value_files`
  feeds `golden/inputs/<sample>.<input>.bin` (raw little-endian tensors of the exact byte size, as the tool
  requires) and `--output_filepath` saves the outputs; `evit-deploy bench import` compares them with
  `golden/reference/*.npy` (PyTorch) under the export's tolerance. By hand:
  `numpy.fromfile("results/golden/<sample>.out.bin", dtype="float32").reshape(shape)` vs the reference `.npy`.
- LiteRT's `inference_diff` tool (`//tensorflow/lite/tools/evaluation/tasks/inference_diff:run_eval`, built for
  `--config=android_arm64`) compares the configured interpreter (e.g. XNNPACK, {s.threads} threads) with
  single-threaded reference kernels on the phone:
  `adb shell /data/local/tmp/run_eval --model_file={self.model_path(ctx)} --num_interpreter_threads={s.threads}
  --output_file_path=/data/local/tmp/inference_diff.txt`. It generates random Gaussian inputs and does not
  read files, so it checks the delegate against LiteRT's own kernels, not against PyTorch: use it beside the
  golden check, not instead of it.
"""


@register_tool
class OrtPerfTest(_AdbTool):
    name = "onnxruntime_perf_test"
    format = "ort"
    outputs = "raw"  # not written by the tool; from the user's app (README)
    binary = "onnxruntime_perf_test"
    variable = "ONNXRUNTIME_PERF_TEST"
    timing_log = "onnxruntime_perf_test.log"
    description = "ONNX Runtime onnxruntime_perf_test (.ort)"

    def prepare(self, ctx: BundleContext) -> None:
        ctx.facts.update({"binary": self.binary_path(ctx), "device_dir": ctx.device_dir,
                          "model_on_device": self.model_path(ctx), "batch": ctx.manifest.batch.size,
                          "threads": ctx.settings.threads, "xnnpack": ctx.settings.xnnpack, "runs": ctx.settings.runs,
                          "warmup_runs": 1, "taskset": ctx.settings.taskset})

    def steps(self, ctx: BundleContext) -> list[Step]:
        s = ctx.settings
        provider = "xnnpack" if s.xnnpack else "cpu"
        run = [self.binary_path(ctx), "-m", "times", "-r", str(s.runs), "-x", str(s.threads), "-e", provider, "-I",
               self.model_path(ctx)]
        return [*self.common_steps(ctx),
                Step(["adb", "shell", self.pinned(ctx, *run)], f"time {ctx.artifact.path}: {s.runs} runs",
                     log=self.timing_log, tags=("timing",))]

    def header(self, ctx: BundleContext) -> list[str]:
        return [f"Usage: {self.variable}=/path/to/onnxruntime_perf_test bash run.sh   (an Android arm64 build)",
                "  ANDROID_SERIAL=<serial> picks the phone when several are attached; ADB=/path/to/adb overrides adb.",
                f"  Without {self.variable}, {self.binary_path(ctx)} must already be on the phone."]

    def readme(self, ctx: BundleContext) -> str:
        s = ctx.settings
        return f"""## The tool: `onnxruntime_perf_test`

Build ONNX Runtime's perf test for Android arm64 (`./build.sh --android --android_abi arm64-v8a ... --use_xnnpack`;
the binary is `onnxruntime_perf_test` in the build folder; ONNX Runtime publishes no prebuilt Android binary
of it), then:

```bash
ONNXRUNTIME_PERF_TEST=/path/to/onnxruntime_perf_test bash run.sh
evit-deploy bench import results --bundle . --device-name "Pixel 8 (Tensor G3)"
```

It runs `{ctx.artifact.path}` {s.runs} times (`-m times -r {s.runs}`) after its one built-in warm-up run, with
{s.threads} intra-op threads (`-x`), the {'XNNPACK' if s.xnnpack else 'CPU'} execution provider (`-e`) and
generated inputs (`-I`) → `results/{self.timing_log}`.

onnxruntime_perf_test writes no outputs, so `bench import` has no correctness row for this bundle. To check
outputs on the phone, feed `golden/inputs/<sample>.<input>.bin` (raw float32, shapes in `bundle.json`) to your
app's ONNX Runtime session and save each output as raw float32 `results/golden/<sample>.out.bin`: `bench
import` compares such files with the PyTorch references under the export's tolerance.
"""

    def output_file(self, stem: str) -> str:
        return f"golden/{stem}.out.bin"
