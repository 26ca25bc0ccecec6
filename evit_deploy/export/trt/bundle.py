"""The Jetson build bundle: ``trtexec`` command lines for TensorRT 10.3's builder flags, ``build_engine.sh`` and
the bundle's ``README.md``, written beside the prepared ONNX and ``trt_build.json``."""

from __future__ import annotations

import shlex
from pathlib import Path

from ... import __version__
from ...errors import EvitError
from ...files import atomic_write
from .plan import BUILD_PLAN, EnginePlan

BUILD_SCRIPT = "build_engine.sh"
BUNDLE_README = "README.md"
JETPACK = "JetPack 6.1/6.2 (L4T r36.4, TensorRT 10.3, CUDA 12.6)"
MAX_ARG_CHARS = 131072 - 1024  # Linux MAX_ARG_STRLEN: one argument of a command line, with a margin


def _spec_list(entries: list[tuple[str, str]]) -> str:
    for name, _ in entries:
        if any(c in name for c in ",:'\"") or "*" in name:
            raise EvitError(f"layer name {name!r} cannot be passed to trtexec (it contains , : * or quotes)")
    return ",".join(f"{name}:{value}" for name, value in entries)


def _shape(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


def _precision_args(plan: EnginePlan) -> list[str]:
    """fp16: ``--fp16`` with ``--precisionConstraints=obey`` and per-layer fp32 precisions/output types for the
    fp32 islands (node names = TensorRT layer names); int8 (a Q/DQ ONNX, quantized at export): ``--int8 --fp16``
    with the float islands constrained to fp32; fp32: no reduced precision and no TF32."""
    precisions = _spec_list([(layer.node, "fp32") for layer in plan.fp32_layers])
    output_types = _spec_list([(layer.node, "fp32") for layer in plan.fp32_layers])  # one type: every output
    if plan.precision == "fp32":
        return ["--noTF32"]
    if plan.precision == "fp16":
        args = ["--fp16"]
        if plan.fp32_layers:  # "*" first: later entries override earlier ones
            args += ["--precisionConstraints=obey", f"--layerPrecisions=*:fp16,{precisions}",
                     f"--layerOutputTypes=*:fp16,{output_types}"]
        return args
    if plan.precision == "int8":
        args = ["--int8", "--fp16"]
        if plan.fp32_layers:  # no "*": unconstrained layers stay free to run int8
            args += ["--precisionConstraints=obey", f"--layerPrecisions={precisions}",
                     f"--layerOutputTypes={output_types}"]
        return args
    return []


def trtexec_args(plan: EnginePlan, trtexec: str = "trtexec") -> list[str]:
    """The ``trtexec`` command that builds ``plan`` with TensorRT 10.3's builder flags (the Jetson path)."""
    args = [trtexec, f"--onnx={plan.onnx}", f"--saveEngine={plan.engine}", *_precision_args(plan)]
    if plan.shapes:
        for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
            args.append(f"{flag}=" + ",".join(f"{name}:{_shape(r[key])}" for name, r in plan.shapes.items()))
        args.append("--shapes=" + ",".join(f"{name}:{_shape(r['opt'])}" for name, r in plan.shapes.items()))
    args.append(f"--memPoolSize=workspace:{plan.workspace_mb}M")
    args.append(f"--builderOptimizationLevel={plan.builder_optimization_level}")
    if plan.timing_cache:
        args.append(f"--timingCacheFile={plan.timing_cache}")
    if plan.dla_core is not None:
        args += [f"--useDLACore={plan.dla_core}", "--allowGPUFallback"]
    too_long = [a.split("=")[0] for a in args if len(a) > MAX_ARG_CHARS]
    if too_long:
        raise EvitError(f"the trtexec argument {too_long[0]} of the {plan.role} would exceed the kernel's "
                        f"{MAX_ARG_CHARS} character limit; build it with `evit-deploy build-engine` instead")
    return args


def build_script(plans: dict[str, EnginePlan], model: str) -> str:
    """``build_engine.sh``: one ``trtexec`` command per role (``bash build_engine.sh [ROLE...]``)."""
    roles = " ".join(plans)
    lines = [
        "#!/usr/bin/env bash",
        f"# Build the TensorRT engines of this bundle ({model}) ON THE TARGET DEVICE: engines are specific to",
        f"# the GPU and the TensorRT version that build them. Written by evit-deploy {__version__} for {JETPACK}.",
        "# Usage: bash build_engine.sh [ROLE...]   (roles: " + roles + "; default: all)",
        "# TRTEXEC=/path/to/trtexec overrides where trtexec is found.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        'if [ ! -x "$TRTEXEC" ]; then',
        '  echo "trtexec not found (looked on PATH and in /usr/src/tensorrt/bin): install TensorRT (JetPack) or set'
        ' TRTEXEC" >&2',
        "  exit 2",
        "fi",
        f'ROLES=" ${{*:-{roles}}} "',
    ]
    for role, plan in plans.items():
        args = trtexec_args(plan, "$TRTEXEC")
        body = ['"$TRTEXEC"'] + [shlex.quote(a) for a in args[1:]]
        lines += ["", f"# {role}: {describe(plan)}", f'if [[ "$ROLES" == *" {role} "* ]]; then']
        if plan.precision in ("fp16", "int8") and plan.fp32_layers:
            lines.append("  # TensorRT >= 10.12: use --stronglyTyped instead of the precision flags below"
                         " (the ONNX carries the types)")
        lines.append(f'  echo "building {plan.engine} ({plan.precision}) from {plan.onnx}"')
        lines.append("  " + " \\\n    ".join(body))
        lines.append("fi")
    lines += ["", 'echo "done: check an engine with: $TRTEXEC --loadEngine=<role>.engine (or evit-deploy validate .)"',
              ""]
    return "\n".join(lines)


def describe(plan: EnginePlan) -> str:
    """One line: precision, fp32 layers, shapes."""
    shapes = "; ".join(
        f"{name} {_shape(plan.shapes[name]['min'])}..{_shape(plan.shapes[name]['max'])}" if name in plan.shapes
        else f"{name} {_shape(shape)}" for name, shape in plan.static_shapes.items())
    kept = f", {len(plan.fp32_layers)} layers kept fp32" if plan.fp32_layers else ""
    dla = f", DLA core {plan.dla_core} with GPU fallback" if plan.dla_core is not None else ""
    return f"{plan.precision}{kept}{dla}; {shapes}"


# What the bundle's artifact notes add about the prepared ONNX, per plan precision.
PRECISION_NOTES = {"int8": "int8: {onnx} is a Q/DQ ONNX (scales calibrated at export); trtexec builds it as written"}


def plan_notes(plan: EnginePlan) -> list[str]:
    """The bundle artifact's notes on ``plan``: what it builds, and what its prepared ONNX holds."""
    notes = [f"{plan.engine}: {describe(plan)}"]
    if plan.precision in PRECISION_NOTES:
        notes.append(PRECISION_NOTES[plan.precision].format(onnx=plan.onnx))
    return notes


def bundle_readme(plans: dict[str, EnginePlan], model: str, target: str) -> str:
    """README.md of a Jetson build bundle."""
    rows = "\n".join(f"| `{p.role}` | `{p.onnx}` | `{p.engine}` | {describe(p)} |" for p in plans.values())
    int8 = [p for p in plans.values() if p.precision == "int8"]
    calib = ""
    if int8:
        calib = (
            "\n## int8\n\nThe int8 graphs are explicitly quantized: the ONNX carries QuantizeLinear/DequantizeLinear "
            "nodes whose scales were calibrated at export (symmetric int8, per-channel weights; see `export.json`, "
            "`quantization`), so TensorRT builds them as written and needs no calibration on the device. The "
            "attention, norm and resize layers stay float (fp32 constraints with builder flags; as typed with "
            "`--stronglyTyped`).\n"
        )
    return f"""# TensorRT build bundle: {model} ({target})

Engines are specific to the GPU and the TensorRT version that build them, so they are built **on the device**
from this bundle. Assumed: {JETPACK} on Jetson AGX Orin / Orin NX / Orin Nano.

| role | prepared ONNX (validated) | engine | build |
|---|---|---|---|
{rows}

- `*.onnx`: the prepared graphs, validated against PyTorch with ONNX Runtime when the bundle was exported
  (figures in `export.json`). fp16 graphs are mixed precision: fp16 with fp32 islands (attention
  matmuls/reductions/division, norms, resizes) and explicit Casts; inputs and outputs stay float32.
- `{BUILD_SCRIPT}`: the exact `trtexec` command per role. TensorRT 10.3 takes the precision from builder flags,
  so an fp16 build uses `--fp16 --precisionConstraints=obey` and names every fp32-island layer in
  `--layerPrecisions`/`--layerOutputTypes` (TensorRT names parsed layers after the ONNX nodes). Helper layers
  the parser adds for a node get suffixed names, so trtexec's `*:fp16` default applies to them; the Python
  API path below keeps those inside an island fp32 too. On TensorRT >= 10.12 use `--stronglyTyped` instead.
- `{BUILD_PLAN}`: the same plan as data (shapes, fp32 layers, workspace, timing cache, DLA) for
  `evit-deploy build-engine`.
- `export.json`: the export manifest (model, profile, validation figures).
{calib}
## Build

```bash
bash {BUILD_SCRIPT}               # every role with trtexec (or: bash {BUILD_SCRIPT} {next(iter(plans))})
evit-deploy build-engine .       # or with the TensorRT Python API (needs evit-deploy and tensorrt on the device)
```

`evit-deploy build-engine` also writes `<engine>.json` (TensorRT version, GPU, compute capability, precision)
beside each engine and adds the engines to `export.json`, so `evit_deploy.runtime.load(".")` runs the engine
and refuses it on another GPU or TensorRT version. Engines built by `{BUILD_SCRIPT}` have no such sidecar.

## Check

- `trtexec --loadEngine=<role>.engine` (with `--shapes=...` for dynamic inputs): loads and times the engine.
- `evit-deploy validate . --weights <checkpoint>`: runs every artifact, engines included, against PyTorch on
  the sample photos (needs PyTorch on the device; pass the checkpoint the export was made from).
"""


def write_bundle(folder: Path, plans: dict[str, EnginePlan], model: str, target: str) -> Path:
    """Write ``build_engine.sh`` (executable) and ``README.md`` for ``plans``; returns the script path."""
    script = Path(folder) / BUILD_SCRIPT
    atomic_write(script, build_script(plans, model), mode=0o755)
    atomic_write(Path(folder) / BUNDLE_README, bundle_readme(plans, model, target))
    return script
