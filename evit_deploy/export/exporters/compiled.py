"""The packaged PyTorch GPU engine: a ``torch.export`` program of the deployment form plus the
``torch.compile`` cache built on the GPU (``torch.compiler.save_cache_artifacts``), so that loading it with
:class:`~evit_deploy.runtime.compiled_backend.CompiledBackend` skips compilation (warm start).

Why not AOTInductor: on the GPU machine available to us (PyTorch 2.11, CUDA 13) loading any AOTInductor
package segfaulted while compiling worked (deployment-pitfalls.md). A torch.export program is portable and
loads without native code; the compile cache is keyed to the GPU and library versions, which the sidecar
(:func:`evit_deploy.host.gpu_facts`) records and the backend checks.
"""

from __future__ import annotations

import copy

import torch

from ...artifacts import TensorSpec
from ...host import cuda_available, gpu_facts
from ...runtime.sidecar import write_sidecar
from ...tasks import ExportUnit
from ..profiles import ExportProfile
from ..recipes.registry import module_stage
from .base import Artifact, Capabilities, ExportContext, Exporter, register_exporter


@register_exporter
class CompiledExporter(Exporter):
    format = "torch-compiled"
    capabilities = Capabilities(precisions=("fp32", "fp16"), consumes="onnx")

    @classmethod
    def settings_problem(cls, profile: ExportProfile, precision: str) -> str | None:
        if profile.compiled.warmup < 1:
            return f"compiled.warmup must be >= 1 (the calls that compile before the cache is saved); got " \
                   f"{profile.compiled.warmup}"
        return None

    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact | None:
        if not cuda_available():
            ctx.skipped.append(f"torch-compiled skipped for {unit.role}: no CUDA GPU on this host (the compile "
                               "cache is built on the GPU it will run on); the fp16 ONNX above is validated")
            return None
        precision = ctx.unit_precision(unit)
        module, notes = module_stage(self.format, unit, ctx)
        with ctx.step(f"torch.export ({unit.role}, {precision})"):
            module = copy.deepcopy(module).cuda().eval()  # the unit's module stays on the CPU for other formats
            example = tuple(t.cuda() for t in unit.example_inputs)
            with torch.no_grad():
                program = torch.export.export(module, example)
            path = ctx.workdir / ctx.file_name(unit.role, ".pt2")
            torch.export.save(program, str(path))
        settings = ctx.profile.compiled
        with ctx.step(f"torch.compile mode={settings.mode} and save its cache ({unit.role})"):
            torch.compiler.reset()
            compiled = torch.compile(program.module(), mode=settings.mode)
            with torch.no_grad():
                for _ in range(settings.warmup):
                    out = compiled(*example)
            torch.cuda.synchronize()
            saved = torch.compiler.save_cache_artifacts()
            cache = path.with_suffix(".cache")
            cache.write_bytes(saved[0] if saved else b"")
        outs = out if isinstance(out, tuple) else (out,)
        inputs = [TensorSpec(n, tuple(t.shape), "float32") for n, t in zip(unit.input_names, unit.example_inputs)]
        outputs = [TensorSpec(n, tuple(t.shape), "float32") for n, t in zip(unit.output_names, outs)]
        valid_for = gpu_facts(torch.cuda.current_device(), torch_versions=True)  # what the compile cache is tied to
        sidecar = valid_for | {"mode": settings.mode, "precision": precision, "cache": cache.name,
                               "inputs": [s.to_dict() for s in inputs], "outputs": [s.to_dict() for s in outputs]}
        write_sidecar(path, sidecar)
        return Artifact("torch-compiled", unit.role, path.name, precision, "NCHW", inputs, outputs,
                        notes=[*ctx.kept_notes(unit), *notes,
                               f"torch.export program + torch.compile({settings.mode}) cache for "
                               f"{sidecar['gpu_name']} (sm {sidecar['compute_capability']}), torch {sidecar['torch']}; "
                               "static shapes"])
