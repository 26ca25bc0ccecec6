"""Per-task export configuration (Optimum-style): which graphs a task exports, their I/O names, dynamic
axes, example and validation inputs, and the task agreement metric the validation gate reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..metrics import row_cosines
from ..processing import InputFacts, preprocess
from ..samples import sample_photo
from ..zoo.cards import ModelCard
from .sizes import check_input_size

Inputs = tuple[torch.Tensor, ...]
Agreement = Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], float]


@dataclass
class ExportUnit:
    """One graph to export: ``role`` is ``model`` (cls/seg), ``encoder`` or ``decoder`` (SAM)."""

    role: str
    module: nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    example_inputs: Inputs
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    validation_inputs: list[tuple[str, Inputs]] = field(default_factory=list)
    agreement_name: str = ""
    agreement: Agreement | None = None
    reduced_precision: bool = True  # False: this graph stays fp32 whatever the export precision


@dataclass
class ExportSpec:
    """What the user asked for, resolved: input size, batch, and whether the batch axis is dynamic."""

    input_size: tuple[int, int]
    batch: int
    dynamic_batch: bool
    photos: list[str]
    noise: int
    dynamic_hw: bool = False  # symbolic height and width (segmentation: ADE20K sizes every image)

    @property
    def second_size(self) -> tuple[int, int]:
        """Another input size a dynamic-H/W export is validated at (proves the axes are really dynamic)."""
        h, w = self.input_size
        return h + 64, w + 96


def _batches(samples: list[tuple[str, torch.Tensor]], batch: int) -> list[tuple[str, torch.Tensor]]:
    """Group [1,...] samples of equal size into batches of ``batch`` (the last padded with its first sample)."""
    out = []
    sizes = list(dict.fromkeys(tuple(t.shape) for _, t in samples))
    for size in sizes:
        same = [s for s in samples if tuple(s[1].shape) == size]
        for i in range(0, len(same), batch):
            group = same[i : i + batch]
            group += [same[0]] * (batch - len(group))
            out.append(("+".join(name for name, _ in group), torch.cat([t for _, t in group])))
    return out


def _image_samples(card: InputFacts, spec: ExportSpec) -> list[tuple[str, torch.Tensor]]:
    h, w = spec.input_size
    suffix = f"@{h}x{w}" if spec.dynamic_hw else ""
    samples = []
    for name in spec.photos:
        samples.append((f"photo:{name}{suffix}", preprocess(sample_photo(name), card, (h, w))))
    gen = torch.Generator().manual_seed(1234)
    samples += [(f"noise:{i}", torch.randn(1, 3, h, w, generator=gen)) for i in range(spec.noise)]
    return samples


def _validation_batch(spec: ExportSpec) -> int:
    # A dynamic batch axis is exercised with a batch other than the example's.
    return spec.batch + 1 if spec.dynamic_batch else spec.batch


def _argmax_agreement(axis: int) -> Agreement:
    def agreement(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> float:
        (name,) = list(ref)[:1]
        return float(np.mean(ref[name].argmax(axis=axis) == out[name].argmax(axis=axis)))

    return agreement


def _min_cosine(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> float:
    name = next(iter(ref))
    return float(row_cosines(ref[name], out[name]).min())


def _mask_agreement(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> float:
    return float(np.mean((ref["masks"] > 0) == (out["masks"] > 0)))


# The agreement metric of each graph the tasks export, by (task, role): validation, `validate` and the device
# results of `bench import` all gate with these.
AGREEMENTS: dict[tuple[str, str], tuple[str, Agreement]] = {
    ("cls", "model"): ("top-1 agreement", _argmax_agreement(1)),
    ("seg", "model"): ("per-pixel argmax agreement", _argmax_agreement(1)),
    ("sam", "encoder"): ("min embedding cosine", _min_cosine),
    ("sam", "decoder"): ("mask sign agreement", _mask_agreement),
}


def task_agreement(task: str, role: str) -> tuple[str, Agreement | None]:
    """(name, function) of the agreement metric for ``role`` of a ``task`` export (("", None) when none)."""
    return AGREEMENTS.get((task, role), ("", None))


def image_unit(role: str, module: nn.Module, facts: InputFacts, spec: ExportSpec, input_name: str, output: str,
               agreement_name: str, agreement: Agreement) -> ExportUnit:
    """A single-input image graph (``[B,3,H,W]`` → one tensor) with its own I/O names, validated on the profile's
    photos (pre-processed by ``facts``' ``preprocess`` block) and noise. Zoo models and competitors alike."""
    dynamic: dict[str, dict[int, str]] = {input_name: {}, output: {}}
    if spec.dynamic_batch:
        dynamic = {input_name: {0: "batch"}, output: {0: "batch"}}
    if spec.dynamic_hw:
        dynamic[input_name] |= {2: "height", 3: "width"}
        dynamic[output] |= {2: "out_height", 3: "out_width"}
    dynamic = {name: axes for name, axes in dynamic.items() if axes}
    samples = _image_samples(facts, spec)
    if spec.dynamic_hw:  # the same photos at a second size, so the gate runs the graph at two sizes
        samples += _image_samples(facts, dataclasses.replace(spec, input_size=spec.second_size, noise=0))
    return ExportUnit(
        role=role,
        module=module,
        input_names=(input_name,),
        output_names=(output,),
        example_inputs=(torch.cat([samples[0][1]] * spec.batch),),
        dynamic_axes=dynamic,
        validation_inputs=[(label, (x,)) for label, x in _batches(samples, _validation_batch(spec))],
        agreement_name=agreement_name,
        agreement=agreement,
    )


def _image_unit(role: str, module: nn.Module, output: str, card: ModelCard, spec: ExportSpec) -> ExportUnit:
    return image_unit(role, module, card, spec, "input_image" if card.task == "sam" else "input", output,
                      *AGREEMENTS[(card.task, role)])


def cls_units(model: nn.Module, card: ModelCard, spec: ExportSpec) -> list[ExportUnit]:
    return [_image_unit("model", model, "logits", card, spec)]


def seg_units(model: nn.Module, card: ModelCard, spec: ExportSpec) -> list[ExportUnit]:
    return [_image_unit("model", model, "logits", card, spec)]


def sam_units(model: nn.Module, card: ModelCard, spec: ExportSpec) -> list[ExportUnit]:
    from .sam_decoder_onnx import (
        DECODER_DYNAMIC_AXES,
        DECODER_INPUT_NAMES,
        DECODER_OUTPUT_NAMES,
        SamOnnxDecoder,
        decoder_example_inputs,
    )

    encoder = _image_unit("encoder", model.image_encoder, "image_embeddings", card, spec)
    with torch.inference_mode():
        embedding = model.image_encoder(encoder.validation_inputs[0][1][0][:1])
    decoder_agreement = task_agreement("sam", "decoder")
    gen = torch.Generator().manual_seed(99)
    prompts = []
    for n_prompts, n_points in ((1, 1), (2, 3)):
        coords = torch.rand(n_prompts, n_points, 2, generator=gen) * 1000
        labels = (torch.rand(n_prompts, n_points, generator=gen) > 0.3).float()
        prompts.append((f"{n_prompts}x{n_points} points", (embedding.clone(), coords, labels)))
    decoder = ExportUnit(
        role="decoder",
        module=SamOnnxDecoder(model),
        input_names=DECODER_INPUT_NAMES,
        output_names=DECODER_OUTPUT_NAMES,
        example_inputs=decoder_example_inputs(2, 2),  # size-1 axes would be frozen by torch.export
        dynamic_axes=DECODER_DYNAMIC_AXES,
        validation_inputs=prompts,
        agreement_name=decoder_agreement[0],
        agreement=decoder_agreement[1],
        reduced_precision=False,  # small, prompt-dependent and precision-sensitive: kept fp32 on every target
    )
    return [encoder, decoder]


TASK_UNITS: dict[str, Callable[[nn.Module, ModelCard, ExportSpec], list[ExportUnit]]] = {
    "cls": cls_units,
    "seg": seg_units,
    "sam": sam_units,
}


def export_units(model: nn.Module, card: ModelCard, spec: ExportSpec) -> list[ExportUnit]:
    check_input_size(card, spec.input_size)
    return TASK_UNITS[card.task](model, card, spec)
