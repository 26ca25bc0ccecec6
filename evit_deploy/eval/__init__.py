"""Accuracy of exports on the user's own copy of a dataset, with the official evaluation protocols.

``evaluate(target, EvalSettings(data=...))`` runs PyTorch and every runnable artifact of an export on the same
images (``datasets``: ImageNet, Cityscapes, ADE20K, COCO layouts; ``protocols``: the base of the official
pre-processing and metrics, each task's protocol being in its spec, :mod:`evit_deploy.tasks`; ``report``: eval.json
/ eval.md). Needs the ``[eval]`` extra for Cityscapes (cityscapesscripts), segmentation resizing (OpenCV) and COCO
masks (pycocotools). The names below are imported on first use.
"""

from __future__ import annotations

from .._lazy import lazy_names

_LAZY = {
    "read_report": "evit_deploy.eval.report",
    "write_report": "evit_deploy.eval.report",
    **dict.fromkeys(("EvalSettings", "accuracy_drops", "accuracy_gate", "bench_accuracy", "evaluate"),
                    "evit_deploy.eval.runner"),
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_names("evit_deploy.eval", _LAZY, globals())
