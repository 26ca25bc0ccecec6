"""``sam``: Segment Anything (EfficientViT-SAM). Two graphs: the image ``encoder`` and the prompt ``decoder`` (points
and box corners in the 1024 prompt frame → the low-res masks and IoU of all four mask tokens; kept fp32), the
builder, the Predictor's handler (EfficientViTSamPredictor: encode once, prompt many times) and the official COCO
protocol (applications/efficientvit_sam/eval_*.py). Torch-side code is imported inside the methods.

Protocol: long side to the encoder side (bilinear), pad; the ground-truth box (xywh → xyxy) as the prompt,
multimask output, the mask (of tokens 1–3) with the highest predicted IoU, upsampled to the image; IoU with the
ground-truth mask; mean over annotations, and per COCO size (areas ≤ 32², 32²–96², ≥ 96², bounds inclusive).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..eval.datasets import annotation_mask
from ..eval.protocols import Item, Protocol, Tally, grouped
from ..images import load_rgb
from ..predict.engine_base import Engine
from ..predict.handlers import Prepared, PromptedHandler
from ..predict.prompts import SamPrompt, parse_prompt
from .graph import Graph, min_cosine
from .spec import TaskSpec, register

if TYPE_CHECKING:
    from torch import nn

    from ..eval.datasets import Sample
    from ..predict.results import SamMasks
    from ..zoo.cards import ModelCard
    from .units import ExportSpec, ExportUnit


def _mask_agreement(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> float:
    return float(np.mean((ref["masks"] > 0) == (out["masks"] > 0)))


ENCODER = Graph("encoder", (("input_image", 4),), (("image_embeddings", 4),), "min embedding cosine", min_cosine)
# The prompt count P and point count N are symbolic. With ``dynamo=True`` (torch 2.13) torch.onnx pairs
# ``dynamic_axes`` with the inputs *positionally*, so the exporter passes ``{"image_embeddings": {}, **axes}``, and
# the example has P, N >= 2 because torch.export silently specialises size-1 example dims.
DECODER = Graph(
    "decoder", (("image_embeddings", 4), ("point_coords", 3), ("point_labels", 2)),
    (("masks", 4), ("iou_predictions", 2)), "mask sign agreement", _mask_agreement, image_input=False,
    dynamic_axes={"point_coords": {0: "prompts", 1: "points"}, "point_labels": {0: "prompts", 1: "points"},
                  "masks": {0: "prompts"}, "iou_predictions": {0: "prompts"}},
    reduced_precision=False,  # small, prompt-dependent and precision-sensitive: kept fp32 on every target
)


class SamHandler(PromptedHandler):
    """EfficientViTSamPredictor: long side → encoder side (bilinear), normalise, pad; prompts and masks in the
    1024 frame; low-res masks → 1024² → crop → original size → threshold 0."""

    graph = ENCODER
    options = {"points": None, "point_labels": None, "box": None, "multimask": True}
    example_options = {"points": [[32.0, 32.0]]}
    request_example = '{"points": [[320, 240]], "point_labels": [1], "multimask": True}'

    def check_options(self, size: tuple[int, int], options: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_options(size, options)
        return {"prompt": parse_prompt(size, checked["points"], checked["point_labels"], checked["box"],
                                       checked["multimask"])}

    def decode(self, engine: Engine, embedding: np.ndarray, size: tuple[int, int],
               prompt: SamPrompt) -> tuple[np.ndarray, np.ndarray]:
        """All four mask tokens ``([4,256,256] logits, [4] IoU)`` for one prompt on one embedding."""
        from ..predict.postprocess import sam_transform_coords

        coords = sam_transform_coords(prompt.points, size).reshape(-1, 2)
        labels = prompt.labels.astype(np.float32)
        box = sam_transform_coords(prompt.box.reshape(2, 2), size) if prompt.box is not None else None
        feeds = {"image_embeddings": np.ascontiguousarray(embedding, dtype=np.float32)}
        if engine.native_boxes:
            feeds["boxes"] = box.reshape(1, 4) if box is not None else None
        elif box is not None:  # the ONNX decoder takes a box as two corner points (labels 2, 3)
            coords = np.concatenate([coords, box])
            labels = np.concatenate([labels, np.array([2, 3], dtype=np.float32)])
        feeds["point_coords"] = coords[None].astype(np.float32)
        feeds["point_labels"] = labels[None]
        out = engine.run(DECODER.role, feeds)
        return out["masks"][0], out["iou_predictions"][0]

    @staticmethod
    def decode_boxes(engine: Engine, embedding: np.ndarray, size: tuple[int, int],
                     boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All four mask tokens of ``P`` box prompts (``[P,4]`` XYXY pixels) on one embedding, in one decoder run:
        ``([P,4,256,256] logits, [P,4] IoU)``."""
        from ..predict.postprocess import sam_transform_coords

        corners = sam_transform_coords(np.asarray(boxes, np.float64).reshape(-1, 2), size).reshape(-1, 2, 2)
        count = len(corners)
        feeds = {"image_embeddings": np.ascontiguousarray(embedding, dtype=np.float32)}
        if engine.native_boxes:
            feeds |= {"boxes": corners.reshape(count, 4).astype(np.float32),
                      "point_coords": np.zeros((count, 0, 2), np.float32),
                      "point_labels": np.zeros((count, 0), np.float32)}
        else:  # the ONNX decoder takes a box as two corner points (labels 2, 3)
            feeds |= {"point_coords": corners.astype(np.float32),
                      "point_labels": np.tile(np.array([[2, 3]], np.float32), (count, 1))}
        out = engine.run(DECODER.role, feeds)
        return out["masks"], out["iou_predictions"]

    def infer(self, engine: Engine, items: list[Prepared]) -> list[Any]:
        embeddings = self.encode(engine, [it.x for it in items])
        return [self.decode(engine, embeddings[i : i + 1], it.original_size, it.options["prompt"])
                for i, it in enumerate(items)]

    def finish(self, item: Prepared, raw: tuple[np.ndarray, np.ndarray]) -> SamMasks:
        from ..predict.postprocess import sam_postprocess_masks
        from ..predict.results import SamMasks

        masks4, iou4 = raw
        prompt: SamPrompt = item.options["prompt"]
        tokens = [1, 2, 3] if prompt.multimask else [0]
        low = np.asarray(masks4[tokens], dtype=np.float32)
        # one mask at a time: full-size float logits of several masks would dominate memory on large photos
        masks = np.stack([sam_postprocess_masks(low[None, i : i + 1], item.original_size)[0, 0] > 0.0
                          for i in range(len(tokens))])
        return SamMasks(masks, np.asarray(iou4[tokens], dtype=np.float32), low, prompt.multimask, prompt.to_dict())

    @staticmethod
    def summary(record: dict[str, Any]) -> str:
        best = record["masks"][record["best"]]
        return f"best mask {record['best']}: score {best['score']:.3f}, {best['area']} px"


SIZE_BINS = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, math.inf)}  # bounds inclusive (COCO)


class SamProtocol(Protocol):
    """COCO box prompts: mean mask IoU over annotations, and per COCO object size."""

    graph, datasets, primary = ENCODER, ("coco",), "miou"
    headline = ("miou", "miou_small", "miou_medium", "miou_large")

    def prepare(self, sample: Sample, size: tuple[int, int] | None) -> Item:
        from ..processing import preprocess

        rgb = load_rgb(sample.image, upright=False)
        x = preprocess(rgb, self.card, size or self.input_size).numpy()
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in sample.annotations], np.float64)
        return Item(sample, x, boxes, (rgb.height, rgb.width))

    def run(self, engine: Engine, items: list[Item]) -> list[Any]:
        embeddings = grouped(engine, items, ENCODER)
        return [SamHandler.decode_boxes(engine, emb[None], item.original_size, item.truth)
                for emb, item in zip(embeddings, items)]

    def score(self, tally: Tally, item: Item, raw: tuple[np.ndarray, np.ndarray], reference: Any | None) -> Any:
        from ..predict.postprocess import sam_postprocess_masks

        masks4, iou4 = raw
        h, w = item.original_size
        preds = []
        for k, ann in enumerate(item.sample.annotations):
            token = 1 + int(np.argmax(iou4[k, 1:4]))  # multimask output: the best of tokens 1..3
            low = np.asarray(masks4[k, token], np.float32)[None, None]
            pred = sam_postprocess_masks(low, (h, w))[0, 0] > 0.0
            gt = annotation_mask(ann, h, w)
            iou = 100.0 * np.count_nonzero(pred & gt) / (np.count_nonzero(pred | gt) + 1e-7)
            area = float(ann["area"])
            tally.counts.setdefault("ious", []).append((area, iou))
            if reference is not None:
                tally.agree += float((pred == reference[k]).sum())
                tally.compared += pred.size
            preds.append(pred)
        tally.add("images", 1)
        return preds

    def metrics(self, tally: Tally) -> dict[str, Any]:
        records = tally.counts.get("ious", [])
        ious = np.array([r[1] for r in records])
        out: dict[str, Any] = {"miou": float(ious.mean()) if len(ious) else None}
        for name, (low, high) in SIZE_BINS.items():
            chosen = [iou for area, iou in records if low <= area <= high]
            out[f"miou_{name}"] = float(np.mean(chosen)) if chosen else None
        out["annotations"], out["images"] = len(records), int(tally.counts.get("images", 0))
        return out


class SamTask(TaskSpec):
    name, title = "sam", "Segment Anything"
    graphs = (ENCODER, DECODER)
    handler, protocol = SamHandler, SamProtocol
    timed_role, measured = "encoder", "image encoder only"  # the prompt decoder is light
    square_input = True
    card_size_only = True  # prompts and masks live in the card's frames

    def build(self, card: ModelCard) -> nn.Module:
        from ..nn.backbones import build_backbone
        from ..nn.heads import SamNeck
        from ..nn.models import EfficientViTSam, EfficientViTSamImageEncoder
        from ..nn.sam_decoder import build_sam_mask_decoder, build_sam_prompt_encoder

        backbone = build_backbone(card.backbone, card.act)
        h = card.head
        neck = SamNeck(h["feature_ids"], backbone.channels(h["feature_ids"]), h["width"], h["depth"],
                       h["expand_ratio"], h["out_channels"], act=card.act)
        encoder = EfficientViTSamImageEncoder(backbone, neck, h["out_channels"])
        return EfficientViTSam(encoder, build_sam_prompt_encoder(), build_sam_mask_decoder(), card.image_size)

    def graph_module(self, model: nn.Module, role: str) -> nn.Module:
        if role == DECODER.role:  # the export form: points and box corners, all four mask tokens
            from ..nn.sam_onnx_decoder import SamOnnxDecoder

            return SamOnnxDecoder(model)
        return model.image_encoder

    def torch_run(self, model: nn.Module, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The decoder runs the stock prompt encoder + mask decoder: true ``boxes`` (a feed beside the graph's
        inputs), as the stock predictor takes them."""
        if role != DECODER.role:
            return super().torch_run(model, role, feeds)
        import torch

        coords = torch.from_numpy(feeds["point_coords"])
        labels = torch.from_numpy(feeds["point_labels"])
        boxes = torch.from_numpy(feeds["boxes"]) if feeds.get("boxes") is not None else None
        points = (coords, labels) if coords.shape[1] > 0 else None
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=None)
        masks, iou = model.mask_decoder.predict_masks(
            image_embeddings=torch.from_numpy(feeds["image_embeddings"]),
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        return {"masks": masks.numpy(), "iou_predictions": iou.numpy()}

    def export_units(self, model: nn.Module, card: ModelCard, spec: ExportSpec) -> list[ExportUnit]:
        """The encoder as an image graph; the decoder validated on random point prompts on the embedding of the
        first validation photo."""
        import torch

        from ..nn.sam_onnx_decoder import decoder_example_inputs
        from .units import ExportUnit, graph_unit

        self.check_input_size(card.name, spec.input_size)
        encoder = graph_unit(ENCODER, self.graph_module(model, ENCODER.role), card, spec)
        with torch.inference_mode():
            embedding = model.image_encoder(encoder.validation_inputs[0][1][0][:1])
        gen = torch.Generator().manual_seed(99)
        prompts = []
        for n_prompts, n_points in ((1, 1), (2, 3)):
            coords = torch.rand(n_prompts, n_points, 2, generator=gen) * 1000
            labels = (torch.rand(n_prompts, n_points, generator=gen) > 0.3).float()
            prompts.append((f"{n_prompts}x{n_points} points", (embedding.clone(), coords, labels)))
        decoder = ExportUnit(
            role=DECODER.role,
            module=self.graph_module(model, DECODER.role),
            input_names=DECODER.input_names,
            output_names=DECODER.output_names,
            example_inputs=decoder_example_inputs(2, 2),  # size-1 axes would be frozen by torch.export
            dynamic_axes={name: dict(axes) for name, axes in DECODER.dynamic_axes.items()},
            validation_inputs=prompts,
            agreement_name=DECODER.agreement_name,
            agreement=DECODER.agreement,
            reduced_precision=DECODER.reduced_precision,
            image_input=DECODER.image_input,
        )
        return [encoder, decoder]


SPEC = register(SamTask())
