"""Runtime backends: every backend checks its feeds once (Backend.run) before running them (_run)."""

from __future__ import annotations

import numpy as np
import pytest

from evit_deploy import runtime
from evit_deploy.errors import EvitError
from evit_deploy.export.exporters import EXPORTERS
from evit_deploy.runtime.base import Backend


def test_feeds_are_checked_once_with_one_line_errors(cls_export):
    backend = runtime.load(cls_export[0])
    x = np.zeros((2, 3, 224, 224), np.float32)
    assert backend.run({"input": x})["logits"].shape == (2, 1000)  # the batch axis is symbolic
    cases = {
        "missing ['input']": {},
        "unknown ['other']": {"input": x, "other": x},
        "has shape [2, 3, 128, 224]": {"input": x[:, :, :128]},
        "has shape [3, 224, 224]": {"input": x[0]},
        "has dtype <U1": {"input": np.full((1, 3, 224, 224), "a")},
    }
    for message, feeds in cases.items():
        with pytest.raises(EvitError, match=message.replace("[", r"\[").replace("]", r"\]")) as exc:
            backend.run(feeds)
        assert "\n" not in str(exc.value)
    with pytest.raises(EvitError, match="takes 1 inputs, got 2"):
        backend(x, x)


def test_every_backend_implements_run_through_the_check():
    runtime.ensure_registered()
    for suffix, cls in runtime.BACKENDS.items():
        assert cls.run is Backend.run, f"{cls.__name__} ({suffix}) overrides run instead of _run"
    # every exporter format that a backend runs has a registered suffix
    from evit_deploy.artifacts import FORMATS

    for fmt in EXPORTERS:
        info = FORMATS[fmt]
        assert not info.runnable or set(info.suffixes) & set(runtime.BACKENDS), fmt
