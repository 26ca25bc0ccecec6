"""``evit-deploy bench EXPORT --adb SERIAL``: bundle the export for Android, then push → run → pull over ``adb``
with the bundle's own steps (the ones its ``run.sh`` renders) and import the results, in one command."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..bench.schema import Report
from ..errors import EvitError, one_line
from ..export import StepReporter, silent_step
from ..signing import TrustSpec
from .bundle import make_bundle, read_bundle
from .importer import import_results
from .settings import DeviceSettings
from .steps import RESULTS, Step, Var

STEP_TIMEOUT_S = 3600


def find_adb() -> str:
    adb = shutil.which("adb")
    if adb is None:
        raise EvitError("--adb needs the adb tool on the PATH (Android SDK platform-tools)")
    return adb


def check_device(adb: str, serial: str) -> None:
    """One-line error unless ``serial`` is attached and ready (``adb -s SERIAL get-state`` says ``device``)."""
    try:
        proc = subprocess.run([adb, "-s", serial, "get-state"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EvitError(f"adb get-state for {serial} failed: {one_line(exc, 160)}") from None
    if proc.returncode != 0 or proc.stdout.strip() != "device":
        said = one_line(proc.stderr or proc.stdout or f"exit {proc.returncode}", 160)
        raise EvitError(f"no Android device '{serial}' ready over adb ({said}); `adb devices` lists them")


def _argv(step: Step, adb: str, serial: str, values: dict[str, str]) -> list[str]:
    argv = [values[a.name] if isinstance(a, Var) else a for a in step.argv]
    if argv[0] != "adb":
        raise EvitError(f"step '{step.purpose}' is not an adb command")
    return [adb, "-s", serial, *argv[1:]]


def run_steps(bundle: Path, adb: str, serial: str, values: dict[str, str],
              step: StepReporter = silent_step) -> list[dict[str, Any]]:
    """Run the bundle's steps over adb from the bundle folder, as run.sh would; results into ``results/``."""
    doc = read_bundle(bundle).doc
    results = bundle / RESULTS
    (results / "golden").mkdir(parents=True, exist_ok=True)
    (results / "BUNDLE_ID").write_text(doc["bundle_id"] + "\n")
    ran = []
    for data in doc["run"]["steps"]:
        st = Step.from_dict(data)
        if (st.when and not values.get(st.when)) or (st.unless_exists and (bundle / st.unless_exists).exists()):
            continue
        with step(st.purpose):
            try:
                proc = subprocess.run(_argv(st, adb, serial, values), cwd=bundle, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, timeout=STEP_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise EvitError(f"{st.purpose} on {serial}: {one_line(exc, 160)}") from None
        if st.log:
            (results / st.log).write_bytes(proc.stdout)
        ran.append({"purpose": st.purpose, "exit": proc.returncode})
        if proc.returncode != 0:
            last = next((line for line in reversed(proc.stdout.decode(errors="replace").splitlines()) if line.strip()),
                        f"exit {proc.returncode}")
            if st.optional:
                ran[-1]["warning"] = one_line(last, 200)
                continue
            hint = (" (is the tool on the phone? --tool-binary PATH pushes it, e.g. the prebuilt "
                    "android_aarch64_benchmark_model)" if "timing" in st.tags and not values else "")
            raise EvitError(f"{st.purpose} failed on {serial}: {one_line(last, 200)}{hint}")
    return ran


def adb_bench(export_dir: str | Path, serial: str, device_name: str | None = None,
              settings: DeviceSettings | None = None, weights: str | None = None,
              tool_binary: str | None = None, step: StepReporter = silent_step,
              require_signature: TrustSpec = None) -> Report:
    """Bundle ``export_dir`` for Android, run it on ``serial`` over adb, import the results; returns the report.
    ``tool_binary``: host path of the device tool to push first (else it must already be on the phone);
    ``require_signature``: the key the export must be signed with (default: ``EVIT_DEPLOY_REQUIRE_SIGNATURE``)."""
    adb = find_adb()
    if tool_binary is not None and not Path(tool_binary).is_file():
        raise EvitError(f"--tool-binary {tool_binary} is not a file")
    check_device(adb, serial)
    with tempfile.TemporaryDirectory(prefix="evit-adb-") as tmp:
        bundle = make_bundle(export_dir, "android", Path(tmp) / "bundle", settings, weights, step=step,
                             require_signature=require_signature)
        variable = read_bundle(bundle).tool.variable
        values = {variable: str(Path(tool_binary).resolve())} if tool_binary else {}
        ran = run_steps(bundle, adb, serial, values, step)
        report = import_results(bundle / RESULTS, bundle, device_name, require_signature)
    report.sections["imported"].update({"adb": {"serial": serial, "steps": ran}, "bundle": "temporary (bench --adb)",
                                        "results": f"pulled from {serial} over adb"})
    return report
