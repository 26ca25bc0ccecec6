"""The ``evit-deploy`` command line.

Subcommands are registered by import path and imported only when run (Polygraphy's tool registry), so
``--help`` stays fast and a subcommand whose optional dependency is missing cannot break the others.
Errors caused by input are printed as one line on stderr with a non-zero exit; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

import click

from ..errors import EvitError
from ..files import Terminated, environment_error

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module:attribute, one-line help shown in the command list)
    "models": ("evit_deploy.cli.zoo_cmds:models", "List the model zoo (params, MACs, published accuracy)."),
    "info": ("evit_deploy.cli.zoo_cmds:info", "Show everything known about one model."),
    "profiles": ("evit_deploy.cli.export_cmds:profiles", "List export profiles (hardware targets); show one."),
    "export": ("evit_deploy.cli.export_cmds:export", "Export a model for a target, validated against PyTorch."),
    "validate": ("evit_deploy.cli.export_cmds:validate", "Re-run the validation of an existing export."),
    "predict": ("evit_deploy.cli.predict_cmds:predict",
                "Predict on images or video (files, cameras, streams); JSON, overlays, annotated video."),
    "serve": ("evit_deploy.cli.predict_cmds:serve", "Serve an export over HTTP (dynamic batching, metrics)."),
    "triton": ("evit_deploy.cli.predict_cmds:triton",
               "Write a Triton Inference Server model repository; --serve starts a server on it."),
    "build-engine": ("evit_deploy.cli.engine_cmds:build_engine", "Build TensorRT engines of an export on the device."),
    "bench": ("evit_deploy.cli.bench_cmds:bench",
              "Latency as the device's own tools would measure it (run, compare, paper-table, adb, import)."),
    "optimize": ("evit_deploy.cli.optimize_cmds:optimize",
                 "Find the fastest export for this machine within an accuracy budget, by measurement."),
    "device-bundle": ("evit_deploy.cli.device_cmds:device_bundle",
                      "Bundle an export for a phone (adb, LiteRT) or a Jetson (trtexec), with golden I/O."),
    "eval": ("evit_deploy.cli.eval_cmds:eval_command", "Accuracy of an export on your dataset (official protocols)."),
    "sign": ("evit_deploy.cli.sign_cmds:sign", "Sign every file of an export folder (OpenSSF model-signing)."),
    "verify": ("evit_deploy.cli.sign_cmds:verify", "Verify an export folder's signature and artifacts."),
    "keygen": ("evit_deploy.cli.sign_cmds:keygen", "Make a key pair for signing exports."),
    "demo": ("evit_deploy.cli.demo:demo", "The main job on a default model: export, validate, benchmark, predict."),
}

EXIT_INPUT_ERROR = 2
EXIT_INTERNAL_ERROR = 1


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[cmd_name][0].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="evit-deploy")
def cli(debug: bool) -> None:
    """evit-deploy: EfficientViT models from PyTorch to validated deployment artifacts."""


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    click.secho(f"warning: {message}", fg="yellow", err=True)


def expand_size_pairs(args: list[str], option: str = "--imgsz") -> list[str]:
    """Accept ``--imgsz H W`` as well as ``--imgsz H --imgsz W`` (click options take a fixed count)."""
    out, i = [], 0
    while i < len(args):
        out.append(args[i])
        if args[i] == option and i + 2 < len(args) and args[i + 1].isdigit() and args[i + 2].isdigit():
            out += [args[i + 1], option, args[i + 2]]
            i += 3
            continue
        i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning errors into one line on stderr and an exit code."""
    args = expand_size_pairs(list(sys.argv[1:] if argv is None else argv))
    if not sys.stdout.isatty():  # logs and pipes: rich would assume 80 columns and truncate the tables
        os.environ.setdefault("COLUMNS", "160")
    debug = "--debug" in args
    warnings.showwarning = _one_line_warning
    try:
        cli.main(args=args, prog_name="evit-deploy", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # usage errors too: one line, with where to find help
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        message = " ".join(exc.format_message().split())
        click.secho(f"error: {message}{hint}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except EvitError as exc:
        if debug:
            raise
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_INPUT_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Terminated as exc:
        click.echo(f"{exc}; cleaned up", err=True)
        sys.exit(128 + exc.signum)
    except Exception as exc:  # an internal failure: still one line unless --debug
        if debug:
            raise
        problem = environment_error(exc, "read or write a file") if isinstance(exc, OSError) else None
        if problem is not None:  # full disk, read-only file system, permissions: the user can fix these
            click.secho(f"error: {problem}", fg="red", err=True)
            sys.exit(EXIT_INPUT_ERROR)
        detail = str(exc).splitlines()[0] if str(exc) else ""
        click.secho(
            f"error: internal error ({type(exc).__name__}: {detail}); rerun with --debug for the traceback",
            fg="red",
            err=True,
        )
        sys.exit(EXIT_INTERNAL_ERROR)
