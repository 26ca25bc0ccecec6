"""``optimize --device android|jetson``: a device that is not this host. The exports of the device's targets are
made and their accuracy checked here (no timing: this machine is not the device); every export within
``--max-drop`` becomes a device bundle (the ordinary bundle format, the device's own benchmark tool), all of them in
one folder with a ``run.sh`` that runs each. ``evit-deploy bench import <folder> --bundle <folder>`` then reads what
the device measured, ranks the candidates and names the winner: the search ends on the device's own figures.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..bench.schema import Machine, Report
from ..device.bundle import make_bundle
from ..device.settings import DeviceSettings
from ..errors import EvitError
from ..files import atomic_write, commit_staged, staged_dir, writing
from ..host import library_versions
from .exports import ExportOutcome
from .output import OPTIMIZE_OUTPUT, RECORD

DEVICE_TARGETS = {"android": ("mobile-cpu-tflite", "mobile-cpu-ort"), "jetson": ("jetson-orin-trt",)}

BUNDLES = "bundles"
RUN_ALL = """#!/usr/bin/env bash
# Every candidate of an evit-deploy optimize search, on the device: each bundle's run.sh writes its results/.
# Then, on the host: evit-deploy bench import {folder} --bundle {folder} --device-name "..."
set -u
cd "$(dirname "$0")"
status=0
for bundle in {bundles}/*/; do
  echo "== $bundle"
  (cd "$bundle" && ./run.sh "$@") || status=$?
done
exit $status
"""


def bundle_name(outcome: ExportOutcome) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", outcome.variant.profile_name)


def write_device_search(outcomes: list[ExportOutcome], device: str, max_drop: float, out: Path,
                        settings: DeviceSettings, weights: str | None, step: Any, model: str,
                        force: bool = False) -> Path:
    """The folder the device runs: one bundle per export within ``max_drop``, ``run.sh``, and the search record."""
    accepted = [o for o in outcomes if o.folder is not None and o.drop is not None and o.drop <= max_drop]
    if not accepted:
        closest = sorted((o for o in outcomes if o.drop is not None), key=lambda o: o.drop)[:3]
        raise EvitError(f"no candidate is within --max-drop {max_drop:g} points (closest: "
                        + ("; ".join(f"{o.variant.label} loses {o.drop:.2f}" for o in closest) or "none exported")
                        + ")")
    with writing(f"write the device search {out}"), staged_dir(out, "optimize output") as tmp:
        candidates = []
        for outcome in accepted:
            name = bundle_name(outcome)
            make_bundle(outcome.folder, device, tmp / BUNDLES / name, settings, weights, step=step,
                        require_signature=False)
            candidates.append({"bundle": f"{BUNDLES}/{name}", "candidate": outcome.variant.label,
                               "drop": outcome.drop, "accuracy": outcome.accuracy_source,
                               "size_bytes": outcome.size_bytes})
        atomic_write(tmp / "run.sh", RUN_ALL.format(folder=out.name, bundles=BUNDLES), mode=0o755)
        files = sorted([str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()] + [RECORD])
        record = {"generator": "evit-deploy optimize", "device": device, "model": model, "max_drop": max_drop,
                  "candidates": candidates, "settings": {"threads": settings.threads, "runs": settings.runs},
                  "files": files}
        atomic_write(tmp / RECORD, json.dumps(record, indent=2) + "\n")
        commit_staged(tmp, out, OPTIMIZE_OUTPUT, force)
    return out


def is_device_search(folder: Path) -> bool:
    try:
        return "device" in json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return False


def finish(folder: Path, device_name: str | None) -> Report:
    """What the device measured for every candidate (each bundle's ``results/``), ranked: the report names the
    winner. A candidate whose results are missing is named, not fatal; none at all is one line."""
    from ..device.importer import import_results

    folder = Path(folder)
    record = json.loads((folder / RECORD).read_text())
    rows, missing = [], []
    for c in record["candidates"]:
        bundle = folder / c["bundle"]
        results = bundle / "results"
        if not results.is_dir():
            missing.append(f"{c['candidate']}: no results in {results} (run {folder.name}/run.sh on the device)")
            continue
        imported = import_results(results, bundle, device_name)
        for row in imported.rows:
            row.model = c["candidate"]
            row.extra.update(drop=round(c["drop"], 3), size_mb=round(c["size_bytes"] / 1e6, 2))
            rows.append(row)
        device_name = device_name or imported.machine.label
    if not rows:
        raise EvitError(f"{folder}: no candidate has device results yet: " + "; ".join(missing))
    ranked = sorted(rows, key=lambda r: r.latency.headline or float("inf"))
    winner = ranked[0]
    report = Report(kind="optimize", title=f"{record['model']}: the fastest export for {device_name}",
                    machine=Machine(label=device_name or "device", where=f"measured on {device_name}"),
                    rows=ranked, model=record["model"], versions=library_versions(), skipped=missing,
                    columns={"drop": "drop (points)", "size_mb": "size MB"}, settings=record["settings"])
    report.notes = [f"Winner on {device_name}: {winner.model}, {winner.latency.headline:.3f} ms "
                    f"({winner.extra.get('statistic', 'median')} by {winner.backend}); its export is in "
                    f"{folder / next(c['bundle'] for c in record['candidates'] if c['candidate'] == winner.model)}"
                    "/export.",
                    "Measured on the device by its own tool, imported; every candidate was within "
                    f"--max-drop {record['max_drop']:g} points before it was bundled."]
    report.sections["search"] = {"device": record["device"], "winner": winner.model,
                                 "winner_ms": winner.latency.headline}
    return report


__all__ = ["DEVICE_TARGETS", "finish", "is_device_search", "write_device_search"]
