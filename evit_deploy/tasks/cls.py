"""``cls``: image classification (ImageNet-1k). Its graph, builder, the Predictor's handler (the ImageNet
evaluation transform; softmax top-k) and the official protocol (applications/efficientvit_cls/eval_*.py: top-1 and
top-5 in %). Torch-side code is imported inside the methods (a spec is read by the runtime without torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..eval.protocols import Item, Protocol, Tally
from ..images import load_rgb
from ..predict.handlers import Prepared, TaskHandler
from ..predict.prompts import OptionError
from .graph import Graph, argmax_agreement
from .spec import TaskSpec, register

if TYPE_CHECKING:
    from torch import nn

    from ..eval.datasets import Sample
    from ..predict.results import Classification
    from ..zoo.cards import ModelCard

DEFAULT_TOP_K = 5
MODEL = Graph("model", (("input", 4),), (("logits", 2),), "top-1 agreement", argmax_agreement(1), class_output=True)


class ClassificationHandler(TaskHandler):
    """ImageNet evaluation transform (shorter side → ceil(r/crop_ratio) bicubic, centre crop); softmax top-k."""

    graph = MODEL
    options = {"top_k": DEFAULT_TOP_K}
    request_example = '{"top_k": 5}'

    def check_options(self, size: tuple[int, int], options: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_options(size, options)
        k, n = checked["top_k"], len(self.info.class_names) or self.info.card.num_classes
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
            raise OptionError(f"top_k must be an integer from 1 to {n}, got {k!r}")
        checked["top_k"] = int(k)
        return checked

    def finish(self, item: Prepared, raw: np.ndarray) -> Classification:
        from ..predict.postprocess import top_k
        from ..predict.results import Classification

        idx, probs = top_k(np.asarray(raw, dtype=np.float32), item.options["top_k"])
        names = self.info.class_names
        return Classification([int(i) for i in idx], [names[i] if i < len(names) else str(i) for i in idx],
                              [float(p) for p in probs])

    @staticmethod
    def summary(record: dict[str, Any]) -> str:
        return ", ".join(f"{t['label']} ({t['score']:.3f})" for t in record["top_k"][:3])


class ClassificationProtocol(Protocol):
    """The card's shorter-side crop (ceil(r / crop_ratio), bicubic, centre crop); top-1 / top-5 in %."""

    graph, datasets, primary, headline = MODEL, ("imagenet",), "top1", ("top1", "top5")

    def prepare(self, sample: Sample, size: tuple[int, int] | None) -> Item:
        from ..processing import preprocess

        x = preprocess(load_rgb(sample.image, upright=False), self.card, size or self.input_size).numpy()
        return Item(sample, x, int(sample.label))

    def score(self, tally: Tally, item: Item, raw: np.ndarray, reference: Any | None) -> Any:
        top5 = np.argsort(-np.asarray(raw, np.float64), kind="stable")[:5]
        tally.add("images", 1)
        tally.add("top1", int(top5[0] == item.truth))
        tally.add("top5", int(item.truth in top5))
        if reference is not None:
            tally.agree += float(top5[0] == reference)
            tally.compared += 1
        return int(top5[0])

    def metrics(self, tally: Tally) -> dict[str, Any]:
        n = tally.counts.get("images", 0)
        return {"top1": 100.0 * tally.counts.get("top1", 0) / n if n else None,
                "top5": 100.0 * tally.counts.get("top5", 0) / n if n else None, "images": n}


class ClassificationTask(TaskSpec):
    name, title = "cls", "image classification"
    graphs = (MODEL,)
    handler, protocol = ClassificationHandler, ClassificationProtocol

    def build(self, card: ModelCard) -> nn.Module:
        from ..nn.backbones import build_backbone
        from ..nn.heads import ClsHead
        from ..nn.models import EfficientViTCls

        backbone = build_backbone(card.backbone, card.act)
        return EfficientViTCls(backbone, ClsHead(backbone.width_list[-1], card.head["widths"], card.num_classes,
                                                 card.act))


SPEC = register(ClassificationTask())
