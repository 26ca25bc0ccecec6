"""A stand-in for ``adb`` (no Android phone is attached to the machines the suite runs on).

What it checks: that ``evit-deploy bench adb`` drives a phone the way a bundle's ``run.sh`` would — the serial on
every call, the order of ``get-state``, ``push``, ``shell`` (mkdir, chmod, sha256sum, taskset … benchmark_model)
and ``pull``, the files pushed and pulled — and reads back and imports what the phone would write. It records
every call's arguments (``$FAKE_ADB_LOG``), answers ``get-state`` for one serial (``$FAKE_ADB_SERIAL``), the
artifact's ``sha256sum`` with ``$FAKE_ADB_SHA``, and ``pull``/``benchmark_model`` from files in
``$FAKE_ADB_FILES`` (a benchmark log, the golden outputs) that the test prepares.

What it does not check: adb itself, a phone, the benchmark tool's flags or measurements, file permissions or
paths on a device.
"""

from __future__ import annotations

from pathlib import Path

from .tools import executable

SCRIPT = r"""printf '%s\n' "$*" >> "$FAKE_ADB_LOG"
serial=""
if [ "$1" = "-s" ]; then serial="$2"; shift 2; fi
case "$1" in
  get-state)
    if [ "$serial" = "$FAKE_ADB_SERIAL" ]; then echo device
    else echo "error: device '$serial' not found" >&2; exit 1; fi ;;
  push) [ -e "$2" ] || { echo "adb: error: cannot stat '$2'" >&2; exit 1; } ;;
  pull)
    name=$(basename "$2")
    if [ -f "$FAKE_ADB_FILES/$name" ]; then cp "$FAKE_ADB_FILES/$name" "$3"
    else echo "adb: error: remote $2 missing" >&2; exit 1; fi ;;
  shell)
    case "$2" in
      sha256sum*) echo "$FAKE_ADB_SHA  ${2#sha256sum }" ;;
      *--output_filepath=*) echo "INFO: Inference timings in us: Init: 1, First inference: 1, Warmup (avg): 1, \
Inference (avg): 1" ;;
      *benchmark_model*) cat "$FAKE_ADB_FILES/benchmark_model.log" ;;
    esac ;;
esac
"""


def install_fake_adb(folder: Path) -> Path:
    """``folder/adb``: the stand-in (put ``folder`` first on the ``PATH`` and set its ``FAKE_ADB_*`` variables)."""
    return executable(folder, "adb", SCRIPT, "/usr/bin/env bash")
