"""The task specs: one registry, what each spec declares, and a new task (models/README.md's worked example) run end to
end through the zoo, export, the manifest contract and the Predictor with nothing but its spec module and its card."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import evit_deploy.tasks.spec as spec_module
from evit_deploy.artifacts import read_manifest
from evit_deploy.errors import EvitError
from evit_deploy.eval import EvalSettings, evaluate
from evit_deploy.export import ExportRequest, run_export
from evit_deploy.metrics import row_cosines
from evit_deploy.predict import Predictor
from evit_deploy.predict.jobs import summary
from evit_deploy.samples import sample_photo
from evit_deploy.tasks import all_roles, all_specs, register, task_names, task_spec
from evit_deploy.zoo import all_cards, create_model, get_card, list_models

from .shared_exports import LIGHT_PROFILE

README = Path(__file__).resolve().parents[1] / "models" / "README.md"


def test_one_spec_per_task_of_the_cards():
    assert task_names() == ("cls", "seg", "sam")
    assert all_roles() == ("model", "encoder", "decoder")
    assert {card.task for card in all_cards().values()} == set(all_specs())
    for name, spec in all_specs().items():
        assert spec.name == name and spec.timed_role in spec.roles
        assert spec.graph(spec.timed_role).image_input  # latency figures time an image graph


def test_unknown_task_and_role_are_one_line_errors():
    with pytest.raises(EvitError, match=r"^unknown task 'det'; choose one of cls, seg, sam$"):
        task_spec("det")
    with pytest.raises(EvitError, match="unknown task 'det'"):
        list_models("det")
    with pytest.raises(EvitError, match=r"a cls model has no 'decoder' graph \(graphs: model\)"):
        task_spec("cls").graph("decoder")


def test_a_task_is_registered_once():
    with pytest.raises(EvitError, match="task 'cls' is registered twice"):
        register(type(task_spec("cls"))())


def test_sam_spec_declares_its_two_graphs():
    sam = task_spec("sam")
    encoder, decoder = sam.graph("encoder"), sam.graph("decoder")
    assert sam.prompted and not task_spec("cls").prompted
    assert (sam.timed_role, sam.measured) == ("encoder", "image encoder only")
    assert encoder.reduced_precision and not decoder.reduced_precision and not decoder.image_input
    assert decoder.input_names == ("image_embeddings", "point_coords", "point_labels")
    assert set(decoder.dynamic_axes) == {"point_coords", "point_labels", "masks", "iou_predictions"}
    with pytest.raises(EvitError, match="Segment Anything models take a square input"):
        sam.check_input_size("efficientvit-sam-l0", (512, 544))
    with pytest.raises(EvitError, match="multiples of 32"):
        task_spec("seg").check_input_size("efficientvit-seg-b0-cityscapes", (100, 128))


def _readme_example() -> str:
    section = README.read_text().split("## Adding a task", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


@pytest.fixture
def depth_task(monkeypatch, tmp_path):
    """models/README.md's ``depth`` task, loaded as ``evit_deploy.tasks.depth`` and registered for this test only,
    and its card (the seg-B0 card with ``task: depth`` and one output channel) added to the zoo for this test."""
    monkeypatch.setattr(spec_module, "_SPECS", dict(all_specs()))
    path = tmp_path / "depth.py"
    path.write_text(_readme_example())
    found = importlib.util.spec_from_file_location("evit_deploy.tasks.depth", path)
    module = importlib.util.module_from_spec(found)
    monkeypatch.setitem(sys.modules, found.name, module)
    found.loader.exec_module(module)
    card = dataclasses.replace(get_card("efficientvit-seg-b0-cityscapes"), name="efficientvit-depth-b0", task="depth",
                               num_classes=1, class_names=None, published={}, checkpoint="efficientvit_depth_b0.pt")
    monkeypatch.setitem(all_cards(), card.name, card)
    return module.SPEC, card


def test_readme_task_runs_through_every_stage(depth_task, tmp_path):
    spec, card = depth_task
    assert task_names() == ("cls", "seg", "sam", "depth") and task_spec("depth") is spec
    assert list_models("depth") == [card.name]
    with torch.inference_mode():  # the zoo builds it from the spec
        assert create_model(card.name)(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 8, 8)

    (tmp_path / "light.yaml").write_text(LIGHT_PROFILE)
    out = tmp_path / "depth-export"
    result = run_export(ExportRequest(card.name, str(tmp_path / "light.yaml"), imgsz=(64, 128), output=str(out)))
    (report,) = result.reports
    assert report.passed and report.agreement_name == "min depth cosine" and report.agreement > 0.999
    manifest = read_manifest(out)  # the contract: the spec's graph names and ranks
    assert manifest.task == "depth"
    assert [(a.role, [t.name for t in a.inputs], [t.name for t in a.outputs]) for a in manifest.artifacts] == [
        ("model", ["input"], ["depth"])]

    photo = sample_photo("astronaut")
    exported = Predictor.from_export(out)(photo)
    eager = Predictor.from_model(card.name, input_size=(64, 128))(photo)
    assert exported.depth.shape == eager.depth.shape == photo.shape[:2]
    assert row_cosines(eager.depth[None], exported.depth[None])[0] > 0.999
    assert summary(exported.to_dict()).startswith("depth ")

    data = tmp_path / "imagenet" / "n01440764"
    data.mkdir(parents=True)
    Image.fromarray(photo).save(data / "photo.jpg")
    with pytest.raises(EvitError, match="monocular depth models have no official evaluation protocol"):
        evaluate(out, EvalSettings(str(tmp_path / "imagenet")))
