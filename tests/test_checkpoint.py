"""Tests for evit_deploy.checkpoint: safe reading of untrusted checkpoints, saving, compatibility."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from evit_deploy.checkpoint import check_compatible, load_checkpoint_into, read_state_dict, save_state_dict
from evit_deploy.errors import CheckpointError, EvitError


class Tiny(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class Other(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 5, 1)
        self.norm = nn.BatchNorm2d(5)


def _trained(width: int = 8, seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    model = Tiny(width)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # give BatchNorm non-trivial running stats and num_batches_tracked
            model(torch.randn(4, 3, 6, 6))
    return model.eval()


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _assert_one_line(exc: pytest.ExceptionInfo[CheckpointError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and "\r" not in message
    assert isinstance(exc.value, EvitError)
    return message


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)  # safetensors stores keys sorted
    for key, value in a.items():
        assert value.dtype == b[key].dtype, key
        assert torch.equal(value, b[key]), key


@pytest.fixture
def model() -> Tiny:
    return _trained()


# ------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "module", "partial-module", "legacy"])
def test_torch_round_trip(tmp_path: Path, model: Tiny, layout: str) -> None:
    sd = model.state_dict()
    path = tmp_path / "ckpt.pt"
    if layout == "plain":
        torch.save(sd, path)
    elif layout == "state_dict":
        torch.save({"state_dict": sd, "epoch": 3}, path)
    elif layout == "model":
        torch.save({"model": sd, "epoch": 3}, path)
    elif layout == "module":
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    elif layout == "partial-module":
        torch.save({(f"module.{k}" if i % 2 else k): v for i, (k, v) in enumerate(sd.items())}, path)
    else:
        torch.save(sd, path, _use_new_zipfile_serialization=False)

    loaded = read_state_dict(path)
    _assert_same(dict(sd), loaded)
    assert loaded["bn.num_batches_tracked"].dtype == torch.int64

    fresh = Tiny()
    load_checkpoint_into(fresh, str(path), "tiny")
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(fresh.eval()(x), model(x))


@pytest.mark.parametrize("name", ["ckpt.safetensors", "ckpt.bin"])
def test_safetensors_round_trip(tmp_path: Path, model: Tiny, name: str) -> None:
    from safetensors.torch import save_file

    path = tmp_path / name  # .bin: recognised by content, not suffix
    save_file({f"module.{k}": v for k, v in model.state_dict().items()}, str(path))
    loaded = read_state_dict(path)
    _assert_same(dict(model.state_dict()), loaded)

    fresh = Tiny()
    load_checkpoint_into(fresh, path, "tiny")
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(fresh.eval()(x), model(x))


@pytest.mark.parametrize("name", ["out.safetensors", "out.pt", "out.pth"])
def test_save_state_dict_round_trip_is_atomic(tmp_path: Path, model: Tiny, name: str) -> None:
    sd = dict(model.state_dict())
    sd["view"] = sd["conv.weight"][:2]  # shares storage with conv.weight
    sd["strided"] = sd["head.weight"].t()
    path = tmp_path / name
    path.write_bytes(b"old contents")
    save_state_dict(sd, path)
    _assert_same(sd, read_state_dict(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp files left over


def test_save_state_dict_errors(tmp_path: Path, model: Tiny) -> None:
    with pytest.raises(CheckpointError) as exc:
        save_state_dict(model.state_dict(), tmp_path / "no-such-dir" / "x.pt")
    assert "cannot write checkpoint" in _assert_one_line(exc)
    with pytest.raises(CheckpointError) as exc:
        save_state_dict({"a": [1, 2]}, tmp_path / "x.pt")  # type: ignore[dict-item]
    assert "not a Tensor" in _assert_one_line(exc)
    assert list(tmp_path.iterdir()) == []


def test_half_precision_checkpoint_is_cast(
    tmp_path: Path, model: Tiny, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="evit_deploy.checkpoint")
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = tmp_path / "half.safetensors"
    save_state_dict(half, path)
    fresh = Tiny()
    load_checkpoint_into(fresh, path, "tiny")
    assert fresh.conv.weight.dtype == torch.float32
    assert torch.equal(fresh.conv.weight, model.conv.weight.half().float())
    assert fresh.bn.num_batches_tracked.dtype == torch.int64
    assert "will be cast to the model's dtype" in caplog.text


def test_missing_num_batches_tracked_is_tolerated(tmp_path: Path, model: Tiny) -> None:
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pt"
    torch.save(sd, path)
    fresh = Tiny()
    load_checkpoint_into(fresh, path, "tiny")
    assert torch.equal(fresh.bn.running_mean, model.bn.running_mean)


# ---------------------------------------------------------------------------------------- unusable files


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(path)
    assert _assert_one_line(exc) == f"checkpoint not found: {path}"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(tmp_path)
    assert "is a directory" in _assert_one_line(exc)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_torch_file(tmp_path: Path, model: Tiny, legacy: bool) -> None:
    full = tmp_path / "full.pt"
    torch.save(model.state_dict(), full, _use_new_zipfile_serialization=not legacy)
    data = full.read_bytes()
    path = tmp_path / "half.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(path)
    message = _assert_one_line(exc)
    assert message.startswith(f"{path} is not a PyTorch checkpoint or is truncated (")
    assert ("zip archive" in message) != legacy


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hello, this is not a checkpoint\n", "text file"),
        (b"", "empty"),
        (b"\x00\x01\x02\xff" * 8, "format"),
    ],
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(path)
    message = _assert_one_line(exc)
    assert "is not a PyTorch checkpoint or is truncated" in message
    assert reason in message


class _System:
    """Unpickling this runs ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


class _Touch:
    """Unpickling this creates ``path`` (via ``open(path, "w")``): a portable code-execution marker."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def _write_malicious(path: Path, payload: object, how: str) -> None:
    obj = {"state_dict": {"w": torch.ones(2)}, "extra": payload}
    if how == "zip":
        torch.save(obj, path)
    elif how == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump({"extra": payload}, f, protocol=pickle.HIGHEST_PROTOCOL if how == "raw" else 2)


def test_malicious_payload_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    """Control: the payload used below does execute under a plain unpickler."""
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Touch(marker))
    pickle.loads(data)  # deliberate: our own bytes, to prove the payload is live
    assert marker.exists()


@pytest.mark.parametrize("how", ["zip", "legacy", "raw", "raw-protocol2"])
@pytest.mark.parametrize("kind", ["system", "open"])
def test_malicious_pickle_is_refused(tmp_path: Path, how: str, kind: str) -> None:
    marker = tmp_path / "pwned"
    payload = _System(f"touch {marker}") if kind == "system" else _Touch(marker)
    path = tmp_path / ("evil.pkl" if how.startswith("raw") else "evil.pt")
    _write_malicious(path, payload, how)
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(path)
    message = _assert_one_line(exc)
    assert message.startswith(f"refused to load {path}: it needs unsafe unpickling (")
    assert message.endswith("only plain tensor checkpoints are accepted")
    assert ("(os.system)" if kind == "system" else "open)") in message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("obj", "type_name"), [([torch.ones(2)], "list"), (torch.ones(3), "Tensor"), (7, "int"), ({}, "empty")]
)
def test_not_a_state_dict(tmp_path: Path, obj: object, type_name: str) -> None:
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(path)
    message = _assert_one_line(exc)
    assert f"{path} holds a" in message
    assert type_name in message
    assert "not a state_dict" in message


def test_dict_with_non_tensor_values(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, path)
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(path)
    assert "entry 'epoch' of type int, not a state_dict" in _assert_one_line(exc)


@pytest.mark.parametrize("damage", ["truncated", "header", "text", "torch-file"])
def test_corrupt_safetensors(tmp_path: Path, model: Tiny, damage: str) -> None:
    path = tmp_path / "w.safetensors"
    save_state_dict(model.state_dict(), path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) - 10])
    elif damage == "header":
        path.write_bytes(data[:8] + b"{garbage" + data[16:])
    elif damage == "text":
        path.write_text("not safetensors at all")
    else:
        torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(path)
    message = _assert_one_line(exc)
    assert message.startswith(f"{path} is not a valid safetensors file (")
    if damage == "torch-file":
        assert "rename it to .pt" in message


# ----------------------------------------------------------------------------------------- compatibility


def test_other_models_checkpoint_names_counts_and_candidate(tmp_path: Path) -> None:
    path = tmp_path / "wide.pt"
    torch.save({"state_dict": _trained(width=16).state_dict()}, path)
    candidates = [("tiny-w8", _shapes(Tiny(8))), ("tiny-w16", _shapes(Tiny(16))), ("other", _shapes(Other()))]
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint_into(Tiny(8), path, "tiny-w8", candidates)
    message = _assert_one_line(exc)
    assert message.startswith("checkpoint does not fit tiny-w8: 6 mis-shaped keys (")
    assert "conv.weight 16x3x3x3 vs model 8x3x3x3" in message
    assert "missing" not in message and "unexpected" not in message
    assert message.endswith("these keys look like tiny-w16")
    assert len(message) < 400


def test_different_keys_report_missing_and_unexpected() -> None:
    with pytest.raises(CheckpointError) as exc:
        check_compatible(Tiny().state_dict(), Other().state_dict(), "tiny", [("other", _shapes(Other()))])
    message = _assert_one_line(exc)
    assert message.startswith("checkpoint does not fit tiny: 8 missing, 7 unexpected keys (missing: ")
    assert "missing: conv.weight, bn.weight, bn.bias, …" in message
    assert "unexpected: stem.weight, stem.bias, norm.weight, …" in message
    assert message.endswith("these keys look like other")


def test_unknown_checkpoint_matches_no_candidate() -> None:
    with pytest.raises(CheckpointError) as exc:
        check_compatible(Tiny().state_dict(), {"foo": torch.ones(1)}, "tiny", [("tiny", _shapes(Tiny()))])
    assert _assert_one_line(exc).endswith("these keys match no known model")


def test_no_candidate_hint_for_own_model() -> None:
    sd = dict(Tiny().state_dict())
    sd["extra.weight"] = torch.ones(1)
    with pytest.raises(CheckpointError) as exc:
        check_compatible(
            Tiny().state_dict(), sd, "tiny", [("tiny", _shapes(Tiny())), ("other", _shapes(Other()))]
        )
    message = _assert_one_line(exc)
    assert message == "checkpoint does not fit tiny: 1 unexpected key (unexpected: extra.weight)"


def test_float_for_integer_buffer_is_rejected() -> None:
    sd = dict(Tiny().state_dict())
    sd["bn.num_batches_tracked"] = torch.tensor(3.0)
    with pytest.raises(CheckpointError) as exc:
        check_compatible(Tiny().state_dict(), sd, "tiny")
    assert (
        "1 wrong-dtype key (wrong-dtype: bn.num_batches_tracked float32 vs model int64)"
        in _assert_one_line(exc)
    )


def test_long_keys_keep_message_short() -> None:
    long = "backbone.stages.3.op_list.0.main.context_module.main.qkv.conv.block{}.weight"
    model = {long.format(i): torch.zeros(4, 4) for i in range(10)}
    ckpt = {long.format(i) + "_x": torch.zeros(4, 4) for i in range(10)}
    ckpt.update({long.format(i): torch.zeros(8, 4) for i in range(5)})
    with pytest.raises(CheckpointError) as exc:
        check_compatible(model, ckpt, "efficientvit-b1-r224")
    message = _assert_one_line(exc)
    assert message.startswith(
        "checkpoint does not fit efficientvit-b1-r224: 5 missing, 10 unexpected, 5 mis-shaped"
    )
    assert len(message) <= 400


def test_compatible_checkpoint_passes(model: Tiny) -> None:
    half = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    check_compatible(model.state_dict(), half, "tiny")
    check_compatible(model.state_dict(), model.state_dict(), "tiny", [("other", _shapes(Other()))])


def test_raw_pickle_of_tensors_is_refused(tmp_path: Path, model: Tiny) -> None:
    """A raw pickle.dump of tensors would need torch.storage._load_from_bytes (itself an unsafe load)."""
    path = tmp_path / "raw.pkl"
    with open(path, "wb") as f:
        pickle.dump(dict(model.state_dict()), f)
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(path)
    assert "needs unsafe unpickling (torch.storage._load_from_bytes)" in _assert_one_line(exc)


def test_protocol0_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "p0.pt"
    path.write_bytes(f"cposix\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(path)
    assert "needs unsafe unpickling (os.system)" in _assert_one_line(exc)
    assert not marker.exists()


def test_truncated_legacy_file_is_never_called_unsafe(tmp_path: Path, model: Tiny) -> None:
    full = tmp_path / "full.pt"
    torch.save(model.state_dict(), full, _use_new_zipfile_serialization=False)
    data = full.read_bytes()
    path = tmp_path / "cut.pt"
    for cut in range(1, len(data), max(1, len(data) // 97)):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as exc:
            read_state_dict(path)
        assert "is not a PyTorch checkpoint or is truncated" in _assert_one_line(exc), cut


class _AddOne(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(_AddOne()), str(path))
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(path)
    assert "TorchScript archive" in _assert_one_line(exc)
