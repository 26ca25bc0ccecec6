"""Accuracy of exports on the user's own copy of a dataset, with the official evaluation protocols.

``evaluate(target, EvalSettings(data=...))`` runs PyTorch and every runnable artifact of an export on the same
images (``datasets``: ImageNet, Cityscapes, ADE20K, COCO layouts; ``protocols``: the official pre-processing and
metrics; ``report``: eval.json / eval.md). Needs the ``[eval]`` extra for Cityscapes (cityscapesscripts),
segmentation resizing (OpenCV) and COCO masks (pycocotools).
"""

from .report import read_report, write_report
from .runner import EvalSettings, accuracy_drops, accuracy_gate, bench_accuracy, evaluate

__all__ = ["EvalSettings", "accuracy_drops", "accuracy_gate", "bench_accuracy", "evaluate", "read_report",
           "write_report"]
