"""A task's graphs made concrete for one model and one request (Optimum-style export configs): the module, I/O
names, dynamic axes, the example input and the validation inputs of each graph, as :class:`ExportUnit`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from ..processing import InputFacts, preprocess
from ..samples import sample_photo
from .graph import Agreement, Graph

Inputs = tuple[torch.Tensor, ...]


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
    image_input: bool = True  # one [B,3,H,W] image in (exporters that take image graphs only route the others)


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


def graph_unit(graph: Graph, module: nn.Module, facts: InputFacts, spec: ExportSpec) -> ExportUnit:
    """The unit of a task's image graph (one image in, one tensor out): its declared names and agreement metric."""
    return image_unit(graph.role, module, facts, spec, graph.input_names[0], graph.output_names[0],
                      graph.agreement_name, graph.agreement)
