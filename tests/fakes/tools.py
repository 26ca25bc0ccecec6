"""Stand-ins for command-line tools the suite cannot run for real (they need a GPU, a phone or a Jetson), as small
executable scripts on a temporary ``PATH``.

What they check: our side of the contract with a tool — the command line we build (every argument, recorded), how
we read what the tool prints or writes, and how we report a tool that is missing, crashes or prints something
else. What they do not check: the tools themselves (their flags' meaning, their measurements, their output format
beyond the examples written into each test). Where the real tool is installed here (``litert-benchmark``,
``benchmark_app``) a test runs it too.
"""

from __future__ import annotations

import stat
from pathlib import Path


def executable(folder: Path, name: str, script: str, shell: str = "/bin/sh") -> Path:
    """``folder/name``: an executable ``shell`` script running ``script``."""
    path = folder / name
    path.write_text(f"#!{shell}\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_trtexec(folder: Path) -> Path:
    """A ``trtexec`` that records its arguments, one per line, in ``args.txt`` beside itself, and builds nothing
    (checks the command lines of a Jetson bundle's ``build_engine.sh``, not an engine)."""
    return executable(folder, "trtexec", 'printf "%s\\n" "$@" > "$(dirname "$0")/args.txt"\n', "/usr/bin/env bash")
