"""Silence for litert-torch and ai-edge-quantizer (the TFLite exporter and its quantization recipes use it)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_litert() -> Iterator[None]:
    """Silence litert-torch's progress console, absl/Python warnings and torchao import chatter."""
    old = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    # ai-edge-quantizer and torchao log through the root logger, torch's pytree through "torch".
    loggers = [logging.getLogger(), logging.getLogger("torch")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        # redirect_stderr: tqdm bars that ai-edge-quantizer forces on for graphs of 100+ ops.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if old is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old
