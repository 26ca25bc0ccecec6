"""Backend for the packaged PyTorch GPU engine (``.pt2`` torch.export program + torch.compile cache)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import EvitError
from ..host import cuda_available, gpu_facts
from .base import Backend, TensorSpec, register_backend
from .sidecar import read_sidecar, sidecar_path


@register_backend(".pt2")
class CompiledBackend(Backend):
    """Loads the program, restores the compile cache (warm start), runs on the GPU.

    ``run`` copies inputs host→device and outputs device→host and synchronises, so timings include the
    transfers, as the paper's do. Refuses a package built for another GPU or library version.
    """

    name = "torch-compiled"
    runs_on_torch = True

    def __init__(self, path: str | Path, threads: int = 0, providers: object = None,
                 shared_cpu: bool = False, options: Mapping[str, str] | None = None) -> None:
        self.check_options(options)
        self.path = Path(path)
        sidecar = read_sidecar(self.path) if self.path.is_file() else None
        if sidecar is None:
            raise EvitError(f"{self.path} is not a compiled package (needs {self.path.name} and "
                            f"{sidecar_path(self.path).name})")
        if not cuda_available():
            raise EvitError(f"{self.path.name} runs on a CUDA GPU; none is available here")
        import torch  # here, not at import: registering this backend must not load torch in every runtime

        here = gpu_facts(torch.cuda.current_device(), torch_versions=True)
        built = {**sidecar, "gpu_name": sidecar.get("gpu_name", sidecar.get("gpu"))}  # "gpu": older packages
        for key in ("gpu_name", "compute_capability", "torch"):
            if built.get(key) != here[key]:
                label = "gpu" if key == "gpu_name" else key
                raise EvitError(f"{self.path.name} was built for {label} {built.get(key)}, this host has "
                                f"{here[key]}: rebuild it here with evit-deploy export")
        cache = self.path.with_name(sidecar["cache"])
        if cache.is_file() and cache.stat().st_size:
            torch.compiler.load_cache_artifacts(cache.read_bytes())
        program = torch.export.load(str(self.path))
        self.module = torch.compile(program.module(), mode=sidecar["mode"])
        self.sidecar = sidecar
        self._inputs = [TensorSpec(s["name"], tuple(s["shape"]), s["dtype"]) for s in sidecar["inputs"]]
        self._outputs = [TensorSpec(s["name"], tuple(s["shape"]), s["dtype"]) for s in sidecar["outputs"]]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name], dtype=np.float32)).cuda(non_blocking=True)
                for s in self._inputs]
        with torch.no_grad():
            out = self.module(*args)
        outs = out if isinstance(out, tuple) else (out,)
        result = {s.name: o.float().cpu().numpy() for s, o in zip(self._outputs, outs)}
        torch.cuda.synchronize()
        return result
