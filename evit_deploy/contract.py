"""What an export of a zoo model must be, checked against the model card its ``export.json`` names.

:func:`evit_deploy.artifacts.read_manifest` calls :func:`check_contract` on every manifest it reads, so a manifest
that names another model than its graphs were made from (a classification ONNX under a segmentation model's
name) is refused in one line before anything runs, instead of failing deep inside post-processing or being
benchmarked against the wrong PyTorch model. Checked for each zoo model:

- the task is the card's, and the graphs (roles) are the task's;
- each artifact's inputs and outputs have the names and ranks of its graph in the task spec
  (:mod:`evit_deploy.tasks`: the names the exporters give and the Predictor feeds), 3 colour channels at the
  manifest's input size on an image input, the card's class count on a class output (at the spec's stride);
- the ``preprocessing`` block, when present, is the card's (the card's is what runs).

The graphs themselves are held to the manifest when they are opened (``runtime.check_io``: names and shapes of
inputs and outputs). Exports of models outside the zoo (the paper's competitors) have their own I/O and are not
checked here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ManifestError
from .tasks import TaskSpec, task_spec
from .zoo.cards import ModelCard, all_cards

Manifest = Any  # evit_deploy.artifacts.Manifest (which calls this module)
TensorSpec = Any  # evit_deploy.artifacts.TensorSpec


class ContractError(ManifestError):
    """A manifest that does not describe an export of the model it names."""


def _fixed(dim: int | str, expected: int) -> bool:
    """A symbolic dimension matches anything; a fixed one must equal ``expected``."""
    return not isinstance(dim, int) or dim == expected


def _check_specs(where: str, kind: str, specs: list[TensorSpec], expected: tuple[tuple[str, int], ...]) -> None:
    got = [(s.name, len(s.shape)) for s in specs]
    if got != list(expected):
        shown = ", ".join(f"{n} (rank {r})" for n, r in expected)
        found = ", ".join(f"{s.name} {list(s.shape)}" for s in specs) or "none"
        raise ContractError(f"{where}: {kind} must be {shown}; the manifest lists {found}")


def _check_dims(where: str, spec: TensorSpec, wanted: dict[int, int], what: str) -> None:
    for axis, value in wanted.items():
        if not _fixed(spec.shape[axis], value):
            raise ContractError(f"{where}: {spec.name} {list(spec.shape)} does not fit {what} (axis {axis} should be "
                                f"{value})")


def _check_graph(where: str, card: ModelCard, spec: TaskSpec, input_size: tuple[int, int], role: str,
                 inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
    graph = spec.graph(role)
    _check_specs(where, "its inputs", inputs, graph.inputs)
    _check_specs(where, "its outputs", outputs, graph.outputs)
    h, w = input_size
    if graph.image_input:
        _check_dims(where, inputs[0], {1: 3, 2: h, 3: w}, f"{card.name}'s input (3 x {h} x {w})")
    if graph.class_output and card.num_classes:
        wanted = {1: card.num_classes}
        if spec.output_stride:
            wanted |= {2: h // spec.output_stride, 3: w // spec.output_stride}
        _check_dims(where, outputs[0], wanted, f"{card.name}'s {outputs[0].name} ({card.num_classes} classes)")


def check_contract(manifest: Manifest, path: Path) -> None:
    """Refuse (one line) a manifest whose task, graphs, I/O or pre-processing is not what the zoo model it names
    has. Models outside the zoo are not checked."""
    card = all_cards().get(manifest.model)
    if card is None:
        return
    if manifest.task != card.task:
        raise ContractError(f"{path}: 'task' is '{manifest.task}', but {card.name} is a '{card.task}' model; the "
                            "manifest does not describe this export; refused")
    spec = task_spec(card.task)
    if set(manifest.roles) != set(spec.roles):
        raise ContractError(f"{path}: an export of {card.name} has the graphs {', '.join(spec.roles)}, not "
                            f"{', '.join(manifest.roles)}; refused")
    for i, entry in enumerate(manifest.artifacts):
        _check_graph(f"{path}: artifacts[{i}] ({entry.path})", card, spec, manifest.input_size, entry.role,
                     entry.inputs, entry.outputs)
    if manifest.preprocessing:
        expected = card.preprocess.note()
        differ = sorted(k for k in set(expected) | set(manifest.preprocessing)
                        if manifest.preprocessing.get(k) != expected.get(k))
        if differ:
            key = differ[0]
            raise ContractError(f"{path}: 'preprocessing.{key}' is {manifest.preprocessing.get(key)!r}, but "
                                f"{card.name}'s model card says {expected.get(key)!r} (the card's is what runs); "
                                "refused")
