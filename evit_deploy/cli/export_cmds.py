"""``evit-deploy export``, ``evit-deploy validate`` and ``evit-deploy profiles``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.table import Table

from ..artifacts import FORMATS
from ..errors import EvitError
from .options import ema_option, imgsz_option, target_option, weights_option
from .output import RichSteps
from .sign_cmds import password


def _report_table(reports, folder: Path | None = None) -> Table:  # noqa: ANN001 - list[ArtifactReport]
    metrics = dict.fromkeys(f"{r.role}: {r.agreement_name}" for r in reports)
    table = Table(title="validation against PyTorch", caption="agreement = " + "; ".join(metrics))
    for col in ("artifact", "precision", "size", "max rel err", "min cosine", "agreement", "result"):
        table.add_column(col, justify="left" if col in ("artifact", "result") else "right", no_wrap=col != "result")
    for r in reports:
        worst_rel = max(m["max_rel"] for m in r.outputs.values())
        worst_cos = min(m["min_cosine"] for m in r.outputs.values())
        size = ""
        files = [folder / p for p in [r.artifact, *FORMATS[r.format].companion_paths(r.artifact)]] if folder else []
        if files and all(f.is_file() for f in files):
            size = f"{sum(f.stat().st_size for f in files) / 2**20:.1f} MiB"
        agreement = f"{r.agreement:.4f}" if r.agreement is not None else "-"
        result = "[green]pass[/]" if r.passed else "[red]FAIL[/]: " + "; ".join(r.failures)
        table.add_row(r.artifact, r.precision, size, f"{worst_rel:.2e}", f"{worst_cos:.6f}", agreement, result)
    return table


@click.command()
@click.argument("model")
@target_option
@weights_option
@imgsz_option
@click.option("--batch", type=click.IntRange(min=1), help="Batch of the exported graph (default: the profile's).")
@click.option("--precision", "-p", help="One of the profile's precisions (default: its first); auto: the first of "
                                       "the profile's auto list this machine's CPU runs (cpu-openvino: bf16, else "
                                       "fp32).")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Output folder (default: ./exports/<model>-<target>/).")
@click.option("--calib", type=click.Path(), help="Folder of calibration images for int8 (default: sample photos).")
@ema_option
@click.option("--force", is_flag=True,
              help="If --output exists and is not a previous export, move it aside (renamed, never deleted).")
@click.option("--allow-large-input", is_flag=True,
              help="Lift the input-size limit (4096 px a side, 8.4 MP): such exports take minutes and tens of GB.")
@click.option("--eval", "eval_data", type=click.Path(exists=True),
              help="Also evaluate the export on this dataset (see `evit-deploy eval`); recorded in export.json.")
@click.option("--eval-limit", type=click.IntRange(min=1), help="With --eval: the first N images only.")
@click.option("--max-drop", type=click.FloatRange(min=0),
              help="The largest accuracy loss allowed, in points. int8: the most sensitive layers stay float until "
                   "the loss is within it (top-1/mIoU against PyTorch on --eval DIR, else lost agreement with the "
                   "float model on the calibration images). With --eval: the export is refused above it.")
@click.option("--sensitivity", is_flag=True,
              help="int8: write a per-layer sensitivity table (each layer quantized alone) into the export.")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False), metavar="PRIVATE_KEY",
              help="Sign every file of the finished export with this key, as the last step after validation "
                   "(see evit-deploy sign).")
@click.option("--password-env", metavar="VAR", help="With --sign: read the key's password from this variable.")
def export(model: str, target: str, weights: str | None, imgsz: tuple[int, ...], batch: int | None,
           precision: str | None, output: str | None, calib: str | None, ema: bool, force: bool,
           allow_large_input: bool, eval_data: str | None, eval_limit: int | None, max_drop: float | None,
           sensitivity: bool, sign_key: str | None, password_env: str | None) -> None:
    """Export MODEL for a hardware target, validate it against PyTorch, write artifacts + export.json.

    Nothing is written unless every artifact passes the profile's validation tolerance. An existing output
    folder is replaced only when it is a previous export holding only what that export wrote.
    """
    from ..export import ExportRequest, preflight

    if len(imgsz) > 2:
        raise click.BadParameter("give at most two values (H and W)", param_hint="--imgsz")
    if password_env is not None and sign_key is None:
        raise click.UsageError("--password-env needs --sign")
    request = ExportRequest(model, target, weights, imgsz or None, batch, precision, output, calib, force,
                            allow_large_input, ema, sensitivity, max_drop, sign=sign_key,
                            sign_password=password(password_env))
    resolved = preflight(request)  # bad input fails here, before torch is imported
    if max_drop is not None and eval_data is None and resolved.precision != "int8":
        raise click.BadParameter("--max-drop needs --eval DIR (the dataset the drop is measured on), or "
                                 "--precision int8", param_hint="--max-drop")

    from ..export import run_export
    from ..tasks import task_spec

    steps = RichSteps()
    gate = None
    if eval_data is not None:
        from ..eval import EvalSettings, accuracy_gate
        from ..eval.datasets import open_dataset

        open_dataset(eval_data)  # a layout mistake fails before the export's minutes of work
        eval_settings = EvalSettings(eval_data, weights=weights, ema=ema, limit=eval_limit)
        gate = accuracy_gate(eval_settings, max_drop, steps)
        single_graph = len(task_spec(resolved.subject.task).graphs) == 1  # the candidate is the whole export
        if resolved.precision == "int8" and max_drop is not None and single_graph:
            from ..eval.runner import candidate_drop

            request.accuracy_drop = candidate_drop(model, resolved.input_size, eval_settings)
    result = run_export(request, steps, gate)
    console = Console()
    console.print(_report_table(result.reports, result.folder))
    for reason in result.skipped:
        console.print(f"[yellow]skipped[/]: {reason}")
    if result.moved_aside is not None:
        console.print(f"[yellow]moved the previous contents of {result.folder} to {result.moved_aside}[/]")
    m = result.manifest
    accuracy = m.validation.get("accuracy")
    if accuracy:
        console.print(f"accuracy on {accuracy['dataset']['images']} images of {accuracy['dataset']['kind']}: "
                      + ", ".join(f"{r['artifact']} {r[accuracy['metric']]:.2f}" for r in accuracy["results"]
                                  if r[accuracy["metric"]] is not None))
    console.print(f"[bold green]exported[/] {model} for {m.target} ({m.precision}, "
                  f"{'x'.join(map(str, m.input_size))}) to {result.folder} in {result.seconds:.1f}s"
                  + (f", signed with {sign_key}" if sign_key else ""))


@click.command()
@click.argument("export_dir", type=click.Path(file_okay=False))
@weights_option
def validate(export_dir: str, weights: str | None) -> None:
    """Re-run the validation gate of an existing export against PyTorch (exit 1 when it fails)."""
    from ..artifacts import read_manifest
    from ..compare.subjects import export_subject
    from ..export import validate_export

    subject = export_subject(read_manifest(export_dir, verify=False).model, weights)  # a competitor's export?
    manifest, reports = validate_export(export_dir, weights, RichSteps(), subject)
    Console().print(_report_table(reports, Path(export_dir)))
    failed = [r for r in reports if not r.passed]
    if failed:
        raise EvitError(f"{len(failed)} of {len(reports)} artifacts of {export_dir} failed validation")
    click.echo(f"all {len(reports)} artifacts of {manifest.model} ({manifest.target}) pass")


@click.group(invoke_without_command=True)
@click.pass_context
def profiles(ctx: click.Context) -> None:
    """List the export profiles (hardware targets); `profiles show NAME` prints one resolved."""
    if ctx.invoked_subcommand is not None:
        return
    from ..export import list_profiles, load_profile

    table = Table(title="export profiles (evit-deploy export MODEL --target NAME)")
    for col in ("name", "formats", "precisions", "batch", "description"):
        table.add_column(col, no_wrap=col != "description")
    for name in list_profiles():
        p = load_profile(name)
        batch = f"dynamic ≤{p.batch.max}" if p.batch.dynamic else f"static {p.batch.size}"
        table.add_row(name, ", ".join(p.formats), ", ".join(p.precisions), batch, p.description)
    Console().print(table)


@profiles.command("show")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def show(target: str, as_json: bool) -> None:
    """Print the resolved profile TARGET (a name or a YAML path), with every default filled in."""
    from ..export import load_profile

    data = load_profile(target).to_dict()
    click.echo(json.dumps(data, indent=2) if as_json else yaml.safe_dump(data, sort_keys=False))
