"""NVIDIA Jetson: build the engine with the export's ``trtexec`` lines (``build_engine.sh`` of the Jetson bundle,
:mod:`evit_deploy.export.trt.bundle`), time it with ``trtexec --exportTimes --exportProfile --separateProfileRun``
and run the golden inputs with ``--loadInputs`` + ``--exportOutput``.

Flags as documented by TensorRT's trtexec (samples/trtexec/README.md, ``trtexec --help``): ``--loadEngine``,
``--shapes=name:AxBxC``, ``--warmUp`` (ms), ``--iterations``, ``--duration`` (s), ``--exportTimes``,
``--exportProfile``, ``--separateProfileRun``, ``--loadInputs=name:file`` (raw binary of the tensor) and
``--exportOutput``.
"""

from __future__ import annotations

from ..artifacts import confined
from ..errors import EvitError
from ..export import BUILD_SCRIPT, JETPACK, build_script, folder_plans
from ..files import atomic_write
from .steps import Step
from .tools import EXPORT_DIR, BundleContext, DeviceTool, register_tool, shape_text


def _shapes_arg(shapes: dict[str, list[int]]) -> list[str]:
    return ["--shapes=" + ",".join(f"{name}:{shape_text(shape, 'x')}" for name, shape in shapes.items())] if shapes \
        else []


@register_tool
class Trtexec(DeviceTool):
    name = "trtexec"
    device = "jetson"
    format = "onnx"
    outputs = "trtexec-json"
    timing_log = "trtexec.log"
    description = "TensorRT trtexec"

    def prepare(self, ctx: BundleContext) -> None:
        export = ctx.folder / EXPORT_DIR
        plans = folder_plans(export, ctx.manifest)  # trt_build.json, else one plan per ONNX artifact
        plan = plans.get(ctx.artifact.role)
        if plan is None:
            raise EvitError(f"the export has no engine plan for its {ctx.artifact.role}")
        if not (export / BUILD_SCRIPT).is_file():  # exports without a Jetson bundle: the same trtexec lines
            atomic_write(export / BUILD_SCRIPT, build_script(plans, ctx.manifest.model), mode=0o755)
        confined(export, plan.engine)
        dynamic = set(plan.shapes)
        timing = {}
        for name, shape in plan.static_shapes.items():  # batch 1 (the paper's edge setting) where the batch is free
            lo = plan.shapes[name]["min"][0] if name in dynamic else shape[0]
            timing[name] = [1, *shape[1:]] if name in dynamic and lo <= 1 else list(shape)
        ctx.facts.update({"engine": f"{EXPORT_DIR}/{plan.engine}", "onnx": f"{EXPORT_DIR}/{plan.onnx}",
                          "precision": plan.precision, "dynamic_inputs": sorted(dynamic),
                          "timing_shapes": timing if dynamic else {}, "batch": next(iter(timing.values()))[0],
                          "warmup_ms": ctx.settings.warmup_ms, "runs": ctx.settings.runs,
                          "build": f"bash {EXPORT_DIR}/{BUILD_SCRIPT} {ctx.artifact.role}", "jetpack": JETPACK})

    def steps(self, ctx: BundleContext) -> list[Step]:
        f, s = ctx.facts, ctx.settings
        engine = f"--loadEngine={f['engine']}"
        steps = [
            Step(["bash", f"{EXPORT_DIR}/{BUILD_SCRIPT}", ctx.artifact.role],
                 f"build {f['engine']} on this Jetson with the export's trtexec line (skipped when it exists)",
                 unless_exists=f["engine"]),
            Step(["sha256sum", f["onnx"], f["engine"]], "sha256 of the ONNX and the engine (bench import checks the "
                 "ONNX)", log="sha256.txt"),
            Step(["trtexec", engine, *_shapes_arg(f["timing_shapes"]), f"--warmUp={s.warmup_ms}",
                  f"--iterations={s.runs}", "--duration=0", "--exportTimes=results/times.json",
                  "--exportProfile=results/profile.json", "--separateProfileRun"],
                 f"time the engine: {s.runs} iterations after {s.warmup_ms} ms of warm-up; per-layer profile in a "
                 "separate run", log=self.timing_log, tags=("timing",)),
        ]
        for g in ctx.golden:
            shapes = {name: spec["shape"] for name, spec in g["inputs"].items()} if f["dynamic_inputs"] else {}
            load = ",".join(f"{name}:{spec['bin']}" for name, spec in g["inputs"].items())
            steps.append(Step(["trtexec", engine, *_shapes_arg(shapes), f"--loadInputs={load}",
                               f"--exportOutput=results/{self.output_file(g['stem'])}", "--iterations=1",
                               "--warmUp=0", "--duration=0"],
                              f"golden input {g['label']}", log=f"golden/{g['stem']}.log", optional=True,
                              tags=("golden",)))
        return steps

    def output_file(self, stem: str) -> str:
        return f"golden/{stem}.output.json"

    def header(self, ctx: BundleContext) -> list[str]:
        return ["Usage: bash run.sh   (on the Jetson; TRTEXEC=/path/to/trtexec overrides where trtexec is found)"]

    def setup(self, ctx: BundleContext) -> list[str]:
        return ['TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
                'if [ ! -x "$TRTEXEC" ]; then echo "trtexec not found (PATH, /usr/src/tensorrt/bin): install '
                'TensorRT (JetPack) or set TRTEXEC" >&2; exit 2; fi', "export TRTEXEC"]

    def readme(self, ctx: BundleContext) -> str:
        f, s = ctx.facts, ctx.settings
        return f"""## The tool: TensorRT `trtexec`

Assumed: {JETPACK}. Copy this folder to the Jetson, set the power mode and clocks the comparison needs (the paper
measured at maximum clocks: `sudo nvpmodel -m 0 && sudo jetson_clocks`), then:

```bash
bash run.sh                                   # on the Jetson
evit-deploy bench import results --bundle . --device-name "Jetson AGX Orin 64GB (MAXN)"   # anywhere
```

`run.sh`

1. builds `{f['engine']}` from `{f['onnx']}` with the export's own trtexec line (`{f['build']}`; skipped when
   the engine exists): engines are specific to the GPU and TensorRT version that build them;
2. times it: `trtexec --loadEngine` with {s.runs} iterations after {s.warmup_ms} ms of warm-up,
   `--exportTimes=results/times.json` (one record per iteration: `latencyMs` = H2D + compute + D2H, the
   paper's "data transfer included" figure; `computeMs`, `h2dMs`/`d2hMs` — `inMs`/`outMs` in older TensorRT),
   and the per-layer profile `--exportProfile=results/profile.json` taken with `--separateProfileRun`, so the
   profiler does not slow the timed run (without it Jetson latencies come out several times the paper's);
3. runs every golden input with `--loadInputs={ctx.input_names[0]}:golden/inputs/<sample>.{ctx.input_names[0]}.bin`
   (raw float32 in the engine's input shape) and writes the engine's outputs with
   `--exportOutput=results/golden/<sample>.output.json`; `bench import` compares them with the PyTorch
   references under the export's tolerance ({f['precision']}).

To compare with Polygraphy instead: its `--load-inputs` reads Polygraphy's own JSON (a list of feed dicts saved
with `polygraphy.json.save_json`), which the `.npy` file beside each `.bin` converts to in a few lines of Python.
"""
