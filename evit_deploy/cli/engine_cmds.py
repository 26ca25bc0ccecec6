"""``evit-deploy build-engine``: build the TensorRT engines of an export folder or Jetson bundle on this host."""

from __future__ import annotations

import click
from rich.console import Console

from .output import RichSteps


@click.command("build-engine")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--role", help="Build only this role (model, encoder or decoder); default: every role.")
@click.option("--timing-cache", type=click.Path(dir_okay=False),
              help="Timing cache file to read and update (default: the plan's, timing.cache in BUNDLE).")
def build_engine(bundle: str, role: str | None, timing_cache: str | None) -> None:
    """Build the TensorRT engines of BUNDLE (a jetson-orin-trt bundle, or any export folder with prepared ONNX)
    with the TensorRT Python API, on the device that will run them.

    Writes <role>.engine and <role>.engine.json (TensorRT version, GPU, precision) into BUNDLE and adds the
    engines to its export.json; int8 engines are built from the Q/DQ ONNX of the export (no calibration here).
    """
    from ..export import build_folder

    sidecars = build_folder(bundle, role, timing_cache, RichSteps())
    console = Console()
    for s in sidecars:
        console.print(f"[bold green]built[/] {s['engine']} ({s['precision']}, {s['typing']}) with TensorRT "
                      f"{s['tensorrt_version']} for {s.get('gpu_name') or 'this GPU'} in {s['build_seconds']}s")
    console.print(f"check them against PyTorch: evit-deploy validate {bundle} [--weights CHECKPOINT]")
