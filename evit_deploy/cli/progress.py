"""Step-by-step progress for long jobs: a spinner while a step runs, a tick and its time when it ends."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console


class RichSteps:
    """A StepReporter (``with steps("export ONNX"): ...``) printing to stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            with self.console.status(f"{name} …"):
                yield
        except BaseException:
            self.console.print(f"[red]✗[/] {name}")
            raise
        self.console.print(f"[green]✓[/] {name} [dim]({time.perf_counter() - started:.1f}s)[/]")
