"""Competitors measured beside EfficientViT (issue 14): the competitor zoo's data, counted params/MACs against the
paper's, and `bench MODEL --compare` end to end with SegFormer at a small size (the issue's check at 512x1024 with
10 runs is a benchmark, not a test: latency/bench_compare.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import time
from dataclasses import replace

import pytest
import torch
from torch import nn

from evit_deploy.bench.schema import Row
from evit_deploy.bench.stats import Stats
from evit_deploy.compare.builders import BUILDERS, Builder, builder_for
from evit_deploy.compare.cards import (
    BUILDER_PACKAGES,
    CompetitorCard,
    PaperRow,
    RandomWeights,
    _onnx_needs,
    all_claims,
    competitors,
    paper_tables,
    resolve_competitor,
)
from evit_deploy.compare.claims import claim_entry
from evit_deploy.compare.counts import count_competitor
from evit_deploy.compare.subjects import batchnorm_from_noise, competitor_subject
from evit_deploy.errors import EvitError, MissingDependency
from evit_deploy.zoo.cards import all_cards

from .helpers import FAST_ARGS, run_cli
from .shared_exports import export_root


def test_cards_load_and_every_claim_and_row_is_consistent():
    tables, cards, claims = paper_tables(), competitors(), all_claims()
    assert set(tables) == {"cityscapes", "ade20k", "imagenet", "sam"}
    for table in tables.values():
        for name in table.efficientvit:  # EfficientViT rows are zoo models of the table's task/dataset
            card = all_cards()[name]
            assert (card.task, card.dataset) == (table.task, table.dataset), name
    for card in cards.values():
        assert card.name == card.name.lower() and " " not in card.name
        if card.measurable:
            assert card.builder in BUILDERS and card.builder in BUILDER_PACKAGES
        else:
            assert card.unavailable
        for table, row in card.rows.items():
            for cid in row.claims:
                assert claims[cid].baseline == card.name and claims[cid].table == table, cid
    for cid, claim in claims.items():
        table = tables[claim.table]
        baseline = cards[claim.baseline].rows[claim.table]
        assert cid in baseline.claims  # the card says which claims it is part of
        ours = table.efficientvit[claim.ours]
        b, o = baseline.figures[claim.column], ours.figures[claim.column]
        derived = b / o if table.columns[claim.column].metric == "latency_ms" else o / b
        assert derived == pytest.approx(claim.ratio, abs=0.06), cid  # the paper's ratio, to its rounding
    assert set(BUILDER_PACKAGES) == set(BUILDERS)
    # what the paper's tables hold and nothing here measures is listed with its reason, not dropped
    for name in ("mask2former-swin-t", "maskformer-swin-t"):
        assert not cards[name].measurable and "no latency" in cards[name].unavailable


def test_recipes_build_the_paper_models():
    """Every SegFormer and SAM recipe builds (meta device) with params within 5% of the paper's; MACs are checked
    at the paper's input size for SegFormer-B1 Cityscapes (the 13.7M of the issue's check) and SAM-ViT-H."""
    checked = 0
    for card in competitors().values():
        if card.builder not in ("transformers-segformer", "segment-anything"):
            continue
        for table, row in card.rows.items():
            count = count_competitor(card, paper_tables()[table], row.input_size, macs=False)
            assert count.device == "meta"
            if row.params_M is not None:
                assert count.params_M == pytest.approx(row.params_M, rel=0.05), (card.name, table)
                checked += 1
    assert checked == 7  # SegFormer B1/B3/B5 Cityscapes, B1/B2/B4 ADE20K, SAM-ViT-H
    for name, table, params, macs in (("segformer-b1", "cityscapes", 13.68, 239.13), ("sam-vit-h", "sam", 641.09,
                                                                                       2980.54)):
        row = competitors()[name].rows[table]
        count = count_competitor(competitors()[name], paper_tables()[table], row.input_size)
        assert count.params_M == pytest.approx(params, abs=0.01) and count.macs_G == pytest.approx(macs, abs=0.01)
        assert count.macs_G == pytest.approx(row.macs_G, rel=0.05)


def test_transformers_imagenet_recipes_are_the_paper_models():
    """ConvNeXt-T/S/B/L and Swin-B from transformers (no torchvision): params and MACs at 224 within the 5% the
    paper's two-digit rounding allows (Swin-B's 15.4G is printed 15G); Swin-T/S and MobileViTV2 build too."""
    checked = 0
    for card in competitors().values():
        if card.builder != "transformers-image":
            continue
        row = card.rows["imagenet"]
        count = count_competitor(card, paper_tables()["imagenet"], row.input_size, macs=row.macs_G is not None)
        assert count.device == "meta" and count.params_M > 10
        if row.params_M is not None:
            assert count.params_M == pytest.approx(row.params_M, rel=0.02), card.name
            assert count.macs_G == pytest.approx(row.macs_G, rel=0.05), card.name
            checked += 1
    assert checked == 5
    assert count_competitor(competitors()["convnext-t"], paper_tables()["imagenet"], (224, 224)).macs_G == \
        pytest.approx(4.455, abs=0.01)


def test_unknown_names_and_missing_packages_are_one_line_errors(capsys):
    with pytest.raises(EvitError, match="did you mean segformer-b1"):
        resolve_competitor("segformr-b1")
    assert resolve_competitor("segformer-b1-ade20k")[1] == "ade20k"
    for args, message in (
        (["bench", "compare", "efficientvit-seg-b1-cityscapes", "segformr-b1"], "did you mean segformer-b1"),
        (["bench", "compare", "efficientvit-seg-b1-cityscapes", "convnext-t"], "not on cityscapes"),
        (["bench", "compare", "efficientvit-seg-b1-cityscapes", "segformer-b1-ade20k"], "not on cityscapes"),
        (["bench", "compare", "efficientvit-seg-b1-cityscapes", ","], "needs competitor names"),
        (["bench", "paper-table", "ade20k", "--models", "segformr-b2"], "did you mean segformer-b2"),
        (["bench", "paper-table", "ade20k", "--models", "segformer-b5"], "not in the paper's ade20k table"),
        (["bench", "paper-table", "kitti"], "'kitti' is not one of"),
        (["bench", "paper-table", "sam", "--weights", "x.pt"], "No such option '--weights'"),
        (["bench", "paper-table", "cityscapes", "--imgsz", "100"], "multiples of 32"),
    ):
        assert run_cli(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (args, err)
    if importlib.util.find_spec("timm") is None:  # this machine: timm (and a working torchvision) are not there
        with pytest.raises(MissingDependency) as exc:
            builder_for(competitors()["coatnet-0"])
        text = str(exc.value)
        assert "[compare-timm]" in text and "torchvision" in text and "\n" not in text


def test_batchnorm_statistics_from_noise():
    """A card's random_weights: every BatchNorm's scale set, its statistics those of one pass over noise (what a
    train-mode pass computes), momentum restored, the model left in eval mode; bad declarations are one line."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.SiLU(), nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4),
                          nn.Dropout(0.5)).eval()
    torch.manual_seed(1)
    batchnorm_from_noise(model, (16, 20), 0.25)
    assert not model.training and all(not m.training for m in model.modules())
    norms = [model[1], model[4]]
    assert all(m.momentum == 0.1 and torch.all(m.weight == 0.25) for m in norms)
    torch.manual_seed(1)
    noise = torch.randn(1, 3, 16, 20)
    with torch.no_grad():
        first = model[0](noise)
        second = model[3](model[2](model[1](first)))
    for m, x in ((norms[0], first), (norms[1], second)):
        assert torch.allclose(m.running_mean, x.mean((0, 2, 3)), atol=1e-3)  # (recomputed in eval mode)
        assert torch.allclose(m.running_var, x.var((0, 2, 3), unbiased=True), rtol=1e-2)
        assert int(m.num_batches_tracked) == 1
    with torch.no_grad():  # each layer's output is now normalised as in training
        assert model[1](first).std() == pytest.approx(0.25, rel=0.05)

    assert RandomWeights.from_dict({"batchnorm": "noise", "batchnorm_weight": 0.25, "why": "chaotic"}, "x") == \
        RandomWeights(True, 0.25, "chaotic")
    for data, message in (({"batchnorm": "data"}, "'init' (as built) or 'noise'"),
                          ({"batchnorm": "noise"}, "say 'why'"),
                          ({"batchnorm_weight": 0.5}, "with batchnorm: noise"),
                          ({"batchnorm": "noise", "batchnorm_weight": -1, "why": "w"}, "positive number"),
                          ({"scale": 1}, "unknown keys")):
        with pytest.raises(EvitError, match=re.escape(message)):
            RandomWeights.from_dict(data, "timm.yaml, efficientnetv2-l")
    assert competitors()["efficientnetv2-l"].random_weights.batchnorm_from_noise


def test_onnx_needs_raise_the_profiles_opset_and_exporter(tmp_path):
    """A competitor whose operators need a later opset (MobileViTV2's fold is Col2Im, opset 18) and the dynamo
    exporter is exported with them, and each ONNX artifact says so; other subjects keep the profile's settings."""
    from evit_deploy.export import OnnxNeeds, load_profile
    from evit_deploy.export.exporters.base import ExportContext
    from evit_deploy.tasks import ExportSpec

    card = competitors()["mobilevitv2-200"]
    assert (card.onnx.min_opset, card.onnx.exporter) == (18, "dynamo") and "Col2Im" in card.onnx.why
    profile, spec = load_profile("cpu-ort"), ExportSpec((64, 64), 1, False, [], 1)
    subject = competitor_subject(card, paper_tables()["imagenet"])
    ctx = ExportContext(tmp_path, subject, profile, "fp32", spec)
    assert (profile.onnx.opset, profile.onnx.exporter) == (17, "torchscript")
    assert (ctx.opset, ctx.onnx_exporter) == (18, "dynamo")
    (note,) = ctx.onnx_notes()
    assert note.startswith("ONNX opset 18, not the profile's 17, exporter dynamo, not the profile's torchscript: ")
    lower = ExportContext(tmp_path, replace(subject, onnx=OnnxNeeds(11, None, "old")), profile, "fp32", spec)
    assert (lower.opset, lower.onnx_exporter, lower.onnx_notes()) == (17, "torchscript", [])
    for data, message in (({"min_opset": 18}, "are both needed"), ({"min_opset": 18, "why": "w", "exporter": "x"},
                                                                    "one of torchscript, dynamo")):
        with pytest.raises(EvitError, match=message):
            _onnx_needs(data, "x.yaml, net")


def test_list_comparisons(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps to the terminal's width (80 when there is none)
    assert run_cli(["bench", "comparisons"]) == 0
    out = capsys.readouterr().out
    assert "segformer-b1" in out and "sam-vit-h" in out and "not measured: the paper gives no latency" in out
    assert "13.9×" in out and "yes (written)" in out and "yes (transformers-image)" in out
    (sr,) = [line for line in out.splitlines() if "Restormer" in line]  # the super-resolution claim's first line
    assert "sr-restormer-6.4x" in sr and "not built: no public EfficientViT-SR" in sr
    assert "architecture exists (the official repository's" in out


def test_claim_is_the_ratio_of_measured_medians_beside_the_papers():
    """SAM-ViT-H vs EfficientViT-SAM-L2: the 48.9x headline (A100, bs16, end to end) beside a measured ratio."""
    table = paper_tables()["sam"]

    def row(model, fmt, median):
        return Row(model, "onnxruntime" if fmt == "onnx" else "pytorch", fmt, "fp32", 1,
                   "encoder.onnx" if fmt == "onnx" else None, latency=Stats(median=median))

    results = [row("efficientvit-sam-l2", "pytorch-eager", 40.0), row("efficientvit-sam-l2", "onnx", 30.0),
               row("sam-vit-h", "pytorch-eager", 900.0), row("sam-vit-h", "onnx", 720.0)]
    entry = claim_entry(table, "sam-vit-h", "efficientvit-sam-l2",
                        (competitors()["sam-vit-h"].rows["sam"], table.efficientvit["efficientvit-sam-l2"]),
                        results, "CPU X (2 threads)", 1)
    assert [h["id"] for h in entry.headlines] == ["sam-vit-h-48.9x"]
    assert entry.speedup == 720.0 / 30.0 and entry.speedup_backend["format"] == "onnx"
    assert entry.text == ("paper: 48.9× on NVIDIA A100 TensorRT fp16 bs16 (end to end: encoder + decoder) — "
                             "measured here: 24.0× on CPU X (2 threads) onnxruntime fp32 bs1")
    a100 = next(p for p in entry.paper if p["column"] == "a100")
    assert a100["ratio"] == pytest.approx(538 / 11) and a100["batch"] == 16


class _Untraceable(nn.Module):
    """Runs in PyTorch, but its ONNX export fails (stands in for a competitor a target cannot export)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 19, 3, stride=8, padding=1)

    def forward(self, x):
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            raise RuntimeError("unsupported operator for this exporter")
        return self.conv(x)


@pytest.fixture
def unbuildable_competitor(monkeypatch):
    """A Cityscapes competitor nothing here can build (every real one now can): named in the report with its reason."""
    row = PaperRow("gone-net", "cityscapes", "Gone-Net", (1024, 2048), figures={"jetson-agx-orin": 100.0})
    card = CompetitorCard("gone-net", "seg", None, {}, {"cityscapes": row}, unavailable="no PyPI package (stand-in)")
    monkeypatch.setitem(competitors(), "gone-net", card)


@pytest.fixture
def broken_competitor(monkeypatch):
    monkeypatch.setitem(BUILDERS, "test-untraceable", Builder("test-untraceable", lambda: None,
                                                              lambda recipe, target: _Untraceable()))
    table = paper_tables()["cityscapes"]
    card = CompetitorCard("broken-net", "seg", "test-untraceable", {}, {})
    monkeypatch.setitem(competitors(), "broken-net", card)
    return card, table


def test_compare_segformer_end_to_end(tmp_path, monkeypatch, capsys, broken_competitor, unbuildable_competitor):
    """The issue's check at a small size: both models measured in one run ("model" on every row), SegFormer-B1's
    counted params within 5% of the paper's 14M, speedup = ratio of the medians; a competitor without a package
    and one whose export fails are named in one line each and the rest of the report is written."""
    monkeypatch.chdir(tmp_path)
    light = str(export_root() / "light.yaml")
    code = run_cli(["bench", "compare", "efficientvit-seg-b1-cityscapes", "segformer-b1,gone-net,broken-net",
                    "--target", light, "--imgsz", "64", "128", *FAST_ARGS, "--budget-s", "150", "-o", "rep"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["kind"] == "comparison" and report["schema"] == 2
    # --budget-s bounds the whole run: the timed rounds get what is left once the workers' starts, warm-ups and
    # overhead calls are reserved (the export time already spent is gone from it too)
    budget = report["sections"]["budget"]
    assert budget["reserved_s"] > 2 * 3.0 and budget["calibrated_on"] == "efficientvit-seg-b1-cityscapes"
    assert report["settings"]["budget_s"] < 150 - budget["reserved_s"] - 1 and budget["spent_s"] < 150
    rows = report["rows"]
    assert all(r["model"] for r in rows)
    assert {(r["model"], r["format"]) for r in rows} == {
        ("efficientvit-seg-b1-cityscapes", "pytorch-eager"), ("efficientvit-seg-b1-cityscapes", "onnx"),
        ("segformer-b1", "pytorch-eager"), ("segformer-b1", "onnx")}
    assert {r["role"] for r in rows if r["model"] == "segformer-b1"} == {"comparison"}
    assert all(r["extra"]["input_size"] == [64, 128] and r["batch"] == 1 for r in rows)
    segformer = report["sections"]["models"]["segformer-b1"]
    assert segformer["counted"]["params_M"] == pytest.approx(14, rel=0.05)
    assert segformer["counted"]["params_M"] == pytest.approx(13.68, abs=0.01) and not segformer["mismatch"]
    assert segformer["counted"]["at"] == [1024, 2048]
    assert all(r["extra"]["params_M"] == segformer["counted"]["params_M"] for r in rows
               if r["model"] == "segformer-b1")

    (claim,) = report["claims"]
    assert (claim["baseline"], claim["ours"]) == ("segformer-b1", "efficientvit-seg-b1-cityscapes")
    median = {(r["model"], r["format"]): r["latency"]["median"] for r in rows}
    assert claim["speedup"] == median[("segformer-b1", "onnx")] / median[("efficientvit-seg-b1-cityscapes", "onnx")]
    for m in claim["measured"]:
        fmt = m["format"]
        assert m["speedup"] == median[("segformer-b1", fmt)] / median[("efficientvit-seg-b1-cityscapes", fmt)]
    assert claim["text"].startswith("paper: 6.01× on NVIDIA Jetson AGX Orin TensorRT fp16 bs1 — measured here: ")
    assert claim["text"].endswith("onnxruntime fp32 bs1")

    reasons = {n["model"]: n["reason"] for n in report["sections"]["not_measured"]}
    assert "no PyPI package" in reasons["gone-net"]
    assert reasons["broken-net"].startswith("not measured on light: step 'export ONNX (model, opset 17, torchscript)' "
                                            "failed: RuntimeError: unsupported operator")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("broken-net" in w or "gone-net" in w for w in warnings)

    manifest = json.loads((tmp_path / "exports" / "segformer-b1-cityscapes-light" / "export.json").read_text())
    assert manifest["model"] == "segformer-b1-cityscapes" and manifest["validation"]["passed"]
    assert manifest["weights"]["random"] and manifest["artifacts"][0]["inputs"][0]["name"] == "pixel_values"
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| segformer-b1 | onnxruntime | onnx | fp32 | 1 |" in md and "| comparison | 13.68 |" in md
    assert "13.68 / 14" in md
    assert "broken-net" in md and "gone-net" in md
    assert (tmp_path / "rep" / "report.html").read_text().count("data:image/png;base64,") == 2  # latency, paper
    assert "segformer-b1 vs efficientvit-seg-b1-cityscapes: paper: 6.01×" in " ".join(out.split())

    # The competitor's export folder is an export like any other: bench measures it on its own.
    assert run_cli(["bench", "run", "exports/segformer-b1-cityscapes-light", *FAST_ARGS, "-o", "rep2"]) == 0
    alone = json.loads((tmp_path / "rep2" / "report.json").read_text())
    assert alone["model"] == "segformer-b1-cityscapes" and len(alone["rows"]) == 2


def test_one_slow_call_does_not_calibrate_the_budget():
    """The seconds per GMAC come from the fastest of several calls: a machine busy for one call (another process
    starting) must not make every later model look too slow for the budget."""
    from types import SimpleNamespace

    from evit_deploy.compare.run import CALIBRATION_CALLS, _seconds_per_gmac

    calls = []

    def graph(x):
        calls.append(x.shape)
        time.sleep(0.4 if len(calls) == 2 else 0.01)  # the first timed call meets a busy machine

    subject = SimpleNamespace(bench_graph=lambda model: graph)
    result = SimpleNamespace(model=None, manifest=SimpleNamespace(input_size=(8, 8)))
    rate = _seconds_per_gmac(subject, result, gmacs=0.5)
    assert len(calls) >= 1 + CALIBRATION_CALLS and calls[0] == (1, 3, 8, 8)
    assert 0.01 / 0.5 <= rate < 0.1 / 0.5


def test_budget_skips_what_would_not_fit(tmp_path, monkeypatch, capsys, unbuildable_competitor):
    """A paper table on a tiny budget: the first model is measured, the rest are skipped with a one-line reason,
    and the report is still written (exit 2: no competitor was measured)."""
    monkeypatch.chdir(tmp_path)
    code = run_cli(["bench", "paper-table", "cityscapes", "--models",
                    "efficientvit-seg-b0-cityscapes,segformer-b1,gone-net", "--target",
                    str(export_root() / "light.yaml"), "--imgsz", "64", "64", *FAST_ARGS, "--budget-s", "0.001",
                    "-o", "rep"])
    err = capsys.readouterr().err
    assert code == 2 and "no competitor was measured" in err and "segformer-b1: skipped: estimated" in err
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert {r["model"] for r in report["rows"]} == {"efficientvit-seg-b0-cityscapes"}
    assert any(s.startswith("segformer-b1: skipped: estimated") and "budget" in s for s in report["skipped"])
    assert report["sections"]["budget"]["calibrated_on"] == "efficientvit-seg-b0-cityscapes"
    assert {n["model"] for n in report["sections"]["not_measured"]} == {"gone-net"}
    assert report["sections"]["mode"] == "paper-table" and report["model"] == "paper-table-cityscapes"
