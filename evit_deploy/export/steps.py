"""Progress reporting for long export steps: ``with step("export ONNX"): ...`` (the CLI's RichSteps, or silence)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

StepReporter = Callable[[str], contextlib.AbstractContextManager]


@contextlib.contextmanager
def silent_step(name: str) -> Iterator[None]:
    yield
