"""Reading, checking and writing model checkpoints (untrusted user files).

PyTorch files are only ever read with ``torch.load(..., weights_only=True)``; ``.safetensors`` files with
``safetensors``. Every failure becomes a one-line :class:`~evit_deploy.errors.CheckpointError`.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import pickletools
import re
import stat
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import torch

from evit_deploy.errors import CheckpointError
from evit_deploy.files import atomic_write

__all__ = ["check_compatible", "load_checkpoint_into", "read_state_dict", "save_state_dict"]

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

_MAX_MESSAGE = 400
_SAFE_PREFIXES = ("torch.", "collections.OrderedDict", "_codecs.encode")
_STRING_OPS = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_NEUTRAL_OPS = {"PROTO", "FRAME", "MEMOIZE"} | _PUT_OPS


def _error(message: str) -> CheckpointError:
    """A CheckpointError whose message is guaranteed to be a single line."""
    return CheckpointError(" ".join(message.split()))


def _short(text: str, limit: int = 100) -> str:
    """First line / sentence of ``text``, at most ``limit`` characters."""
    text = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    first = re.split(r"(?<=[a-z0-9)])\. ", text, maxsplit=1)[0].rstrip(".")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _reason(exc: BaseException) -> str:
    return _short(str(exc)) or type(exc).__name__


# ---------------------------------------------------------------------------------------------- reading


def _head(path: Path, n: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """Safetensors: 8-byte little-endian header length, then a JSON object filling that many bytes."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 2 <= header_len <= size - 8


class _PickleScan:
    """Globals and opcodes of the *complete* pickles in a byte stream, found without executing anything."""

    def __init__(self, f: BinaryIO, max_ops: int = 1_000_000) -> None:
        self.globals: list[str] = []
        self.opcodes: set[str] = set()
        ops = 0
        while ops < max_ops:  # legacy torch files are several pickles in a row
            found: list[str] = []
            codes: set[str] = set()
            pushed: list[object] = []
            memo: dict[int, object] = {}
            try:
                for op, arg, _pos in pickletools.genops(f):
                    ops += 1
                    codes.add(op.code)
                    if op.name == "GLOBAL" and isinstance(arg, str):
                        found.append(arg.replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(pushed) >= 2:
                        module, name = pushed[-2], pushed[-1]
                        if isinstance(module, str) and isinstance(name, str):
                            found.append(f"{module}.{name}")
                    if op.name in _STRING_OPS:
                        pushed.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
                    elif op.name in _GET_OPS:
                        pushed.append(memo.get(int(arg)))
                    elif op.name == "MEMOIZE":
                        memo[len(memo)] = pushed[-1] if pushed else None
                    elif op.name in _PUT_OPS:
                        memo[int(arg)] = pushed[-1] if pushed else None
                    if op.name not in _NEUTRAL_OPS | _STRING_OPS | _GET_OPS:
                        pushed.append(None)
                    if ops >= max_ops:
                        return
            except Exception:  # noqa: BLE001 - not (or no longer) a pickle stream: stop scanning
                return
            self.globals += found  # genops returned normally: this pickle reached STOP
            self.opcodes |= codes


def _scan(path: Path) -> _PickleScan:
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            f.seek(0)
            return _PickleScan(f)
        with zipfile.ZipFile(f) as archive:
            names = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            with archive.open(names[0]) as data:
                return _PickleScan(io.BytesIO(data.read()))


def _public_global(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][\w.]*", name):  # corrupted or hostile: show it escaped and short
        return ascii(name)[:60]
    module, _, attr = name.rpartition(".")
    return f"os.{attr}" if module in ("posix", "nt") else name[:80]


def _is_allowed(name: str) -> bool:
    try:  # private, but the exact allowlist torch uses; fall back to a heuristic
        return name in torch._weights_only_unpickler._get_allowed_globals()
    except Exception:  # noqa: BLE001
        return name.startswith(_SAFE_PREFIXES) and name != "torch.storage._load_from_bytes"


def _unsafe_reason(path: Path, torch_message: str) -> str | None:
    """What a refused file wanted (e.g. ``os.system``), or None if it is not a complete pickle after all.

    Only what a static scan of complete pickles confirms is reported, so a truncated file (whose last
    opcodes are garbage) is not mistaken for a malicious one.
    """
    try:
        scan = _scan(path)
    except Exception:  # noqa: BLE001 - damaged zip / unreadable: not a checkpoint
        return None
    unsafe = [g for g in scan.globals if not _is_allowed(g)]
    named = re.search(r"GLOBAL\s+([\w.]*\w)", torch_message)
    if named and named.group(1) in unsafe:
        return _public_global(named.group(1))
    if unsafe:
        return _public_global(unsafe[0])
    operand = re.search(r"Unsupported operand (\d+)", torch_message)
    if operand and chr(int(operand.group(1))) in scan.opcodes:
        return f"pickle opcode {pickletools.code2op[chr(int(operand.group(1)))].name} is not allowed"
    return None


def _not_a_checkpoint_reason(path: Path, exc: BaseException) -> str:
    head = _head(path)
    message = str(exc)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        match = re.search(r"zip archive: ([^.]*)", message)
        return f"damaged zip archive: {match.group(1)}" if match else f"damaged zip archive: {_reason(exc)}"
    if head[:1] == b"\x80":
        if isinstance(exc, EOFError) or "EOF" in message:
            return "pickle data ends early"
        return "damaged pickle data" if "Weights only" in message else f"damaged pickle data: {_reason(exc)}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised file format"
    if text.isprintable() or all(c.isprintable() or c.isspace() for c in text):
        return "it looks like a text file"
    return "unrecognised file format"


def _load_torch(path: Path) -> object:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. "Detected pickle protocol 4 ..."
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unsafe_reason(path, str(exc)) if "Weights only load failed" in str(exc) else None
        if reason:
            raise _error(
                f"refused to load {path}: it needs unsafe unpickling ({reason}); "
                "only plain tensor checkpoints are accepted"
            ) from None
        raise _error(
            f"{path} is not a PyTorch checkpoint or is truncated ({_not_a_checkpoint_reason(path, exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes can fail anywhere in torch.load
        if "TorchScript" in str(exc):
            raise _error(
                f"refused to load {path}: it is a TorchScript archive (code), not a state_dict; "
                "only plain tensor checkpoints are accepted"
            ) from None
        if isinstance(exc, OSError) and exc.strerror:
            raise _error(f"cannot read checkpoint {path}: {exc.strerror}") from None
        raise _error(
            f"{path} is not a PyTorch checkpoint or is truncated ({_not_a_checkpoint_reason(path, exc)})"
        ) from None


def _load_safetensors(path: Path, head: bytes) -> StateDict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - SafetensorError and friends on untrusted bytes
        if isinstance(exc, OSError) and exc.strerror:
            raise _error(f"cannot read checkpoint {path}: {exc.strerror}") from None
        reason = _reason(exc).removeprefix("Error while deserializing header: ")
        hint = (
            "; it looks like a PyTorch checkpoint, rename it to .pt" if head.startswith(b"PK\x03\x04") else ""
        )
        raise _error(f"{path} is not a valid safetensors file ({reason}{hint})") from None


def _type_name(obj: object) -> str:
    return type(obj).__name__


EMA_KEYS = ("state_dict_ema", "model_ema", "ema")  # where training scripts keep the EMA weights


def _unwrap(obj: object, path: Path, ema: bool = False) -> StateDict:
    if isinstance(obj, Mapping):
        found = [k for k in EMA_KEYS if isinstance(obj.get(k), Mapping)]
        if ema:
            if not found:
                raise _error(f"{path} has no EMA weights (looked for {', '.join(EMA_KEYS)}); drop --ema")
            obj = obj[found[0]]
        elif found and not isinstance(obj.get("state_dict"), Mapping) and not isinstance(obj.get("model"), Mapping):
            raise _error(f"{path} holds only EMA weights ('{found[0]}'), no 'state_dict': pass --ema to load them")
    if isinstance(obj, Mapping):
        inner = obj.get("state_dict")
        if isinstance(inner, Mapping):
            obj = inner
        elif inner is None:
            model = obj.get("model")
            if (
                isinstance(model, Mapping)
                and model
                and all(isinstance(v, torch.Tensor) for v in model.values())
            ):
                obj = model
    if not isinstance(obj, Mapping):
        raise _error(f"{path} holds a {_type_name(obj)}, not a state_dict")
    if not obj:
        raise _error(f"{path} holds an empty {_type_name(obj)}, not a state_dict")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise _error(
                f"{path} holds a {_type_name(obj)} with entry {str(key)[:60]!r} of type "
                f"{_type_name(value)}, not a state_dict (str -> Tensor)"
            )
    state: StateDict = {}
    for key, value in obj.items():
        name = key.removeprefix("module.")
        if name in state:
            raise _error(f"{path} has both {key!r} and {name!r}; cannot strip the 'module.' prefix")
        state[name] = value
    return state


def read_state_dict(path: str | os.PathLike[str], ema: bool = False) -> StateDict:
    """Safely read a ``.pt``/``.pth``/``.safetensors`` checkpoint into a CPU state_dict.

    Accepts the state_dict itself or ``{"state_dict": ...}`` (or ``{"model": ...}``) and strips a
    ``module.`` (DataParallel) prefix; ``ema`` takes the EMA weights (``state_dict_ema``, ``model_ema`` or
    ``ema``) instead. Raises :class:`CheckpointError` with a one-line message.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise _error(f"checkpoint not found: {p}") from None
    except OSError as exc:
        raise _error(f"cannot read checkpoint {p}: {exc.strerror or _reason(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _error(f"checkpoint {p} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise _error(f"checkpoint {p} is not a regular file")
    try:
        head = _head(p)
    except OSError as exc:
        raise _error(f"cannot read checkpoint {p}: {exc.strerror or _reason(exc)}") from None
    if p.suffix.lower() == ".safetensors" or _looks_like_safetensors(head, st.st_size):
        obj: object = _load_safetensors(p, head)
    else:
        obj = _load_torch(p)
    return _unwrap(obj, p, ema)


# ---------------------------------------------------------------------------------------------- writing


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Atomically write ``state_dict``: safetensors for a ``.safetensors`` suffix, else ``torch.save``."""
    p = Path(path)
    state: StateDict = {}
    seen: set[tuple[int, int]] = set()
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise _error(f"cannot save {p}: entry {str(key)[:60]!r} is a {_type_name(value)}, not a Tensor")
        tensor = value.detach().cpu()
        if p.suffix.lower() == ".safetensors":  # safetensors refuses shared or strided storage
            tensor = tensor.contiguous()
            ident = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
            if tensor.numel() and ident in seen:
                tensor = tensor.clone()
            seen.add(ident)
        state[key] = tensor
    if p.suffix.lower() == ".safetensors":
        from safetensors.torch import save

        data = save(state)
    else:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
    if not p.parent.is_dir():
        raise _error(f"cannot write checkpoint {p}: the folder {p.parent} does not exist")
    try:
        atomic_write(p, data)
    except OSError as exc:
        raise _error(f"cannot write checkpoint {p}: {exc.strerror or _reason(exc)}") from None


# --------------------------------------------------------------------------------------------- checking


def _fmt_shape(shape: Iterable[int]) -> str:
    dims = tuple(shape)
    return "x".join(map(str, dims)) if dims else "scalar"


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_complex:
        return "complex"
    return "float" if dtype.is_floating_point else "integer"


def _fillable(key: str, ckpt_state: Mapping[str, object]) -> bool:
    """BatchNorm fills a missing ``num_batches_tracked`` itself (old checkpoints lack it)."""
    return key.endswith("num_batches_tracked") and (
        key.removesuffix("num_batches_tracked") + "running_mean" in ckpt_state
    )


def _match_score(ckpt_shapes: Mapping[str, tuple[int, ...]], cand: Mapping[str, tuple[int, ...]]) -> float:
    """Fraction of the checkpoint's (key, shape) pairs found in ``cand``, minus the fraction of extra keys."""
    if not ckpt_shapes or not cand:
        return 0.0
    matched = sum(1 for k, s in ckpt_shapes.items() if k in cand and tuple(cand[k]) == s)
    extra = sum(1 for k in cand if k not in ckpt_shapes and not _fillable(k, ckpt_shapes))
    return matched / len(ckpt_shapes) - extra / len(cand)


def _best_candidate(
    ckpt_shapes: dict[str, tuple[int, ...]],
    model_shapes: dict[str, tuple[int, ...]],
    model_name: str,
    candidates: Iterable[tuple[str, Mapping[str, tuple[int, ...]]]],
) -> str:
    own = _match_score(ckpt_shapes, model_shapes)
    scored = [(name, _match_score(ckpt_shapes, shapes)) for name, shapes in candidates]
    best = max((score for _, score in scored), default=0.0)
    names = [name for name, score in scored if score >= best - 1e-9]
    if best >= 0.5 and model_name not in names and best >= own + 0.2:
        shown = " or ".join(names[:3]) + (" (or others)" if len(names) > 3 else "")
        match = "" if best > 1 - 1e-9 else f" ({best:.0%} match)"
        return f"; these keys look like {shown}{match}"
    if scored and best < 0.5 and own < 0.5:
        return "; these keys match no known model"
    return ""


def _abbrev(key: str, width: int) -> str:
    """Shorten a long key in the middle, keeping more of its (more telling) end."""
    if len(key) <= width:
        return key
    head = (width - 1) // 3
    return key[:head] + "…" + key[len(key) - (width - 1 - head) :]


_Item = tuple[str, str]  # (key, detail such as " 64x3 vs model 32x3")


def _compose(
    model_name: str, groups: list[tuple[str, list[_Item], int]], hint: str, n: int, width: int
) -> str:
    counts = ", ".join(f"{total} {label}" for label, _, total in groups if total)
    details = []
    for label, items, total in groups:
        if total:
            shown = ", ".join(_abbrev(key, width) + detail for key, detail in items[:n])
            details.append(f"{label}: {shown}{', …' if total > n else ''}")
    noun = "key" if sum(total for _, _, total in groups) == 1 else "keys"
    return f"checkpoint does not fit {model_name}: {counts} {noun} ({'; '.join(details)}){hint}"


def check_compatible(
    model_state: Mapping[str, torch.Tensor],
    ckpt_state: Mapping[str, torch.Tensor],
    model_name: str,
    candidates: Iterable[tuple[str, Mapping[str, tuple[int, ...]]]] | None = None,
) -> None:
    """Raise one one-line :class:`CheckpointError` unless ``ckpt_state`` fits ``model_state`` exactly.

    Compares keys, shapes and float/integer kinds. A lower-precision float checkpoint for a float
    parameter is allowed (it is cast when loaded). ``candidates`` (name, {key: shape}) are used to say
    which known model the checkpoint looks like instead.
    """
    missing = [k for k in model_state if k not in ckpt_state and not _fillable(k, ckpt_state)]
    unexpected = [k for k in ckpt_state if k not in model_state]
    misshaped: list[_Item] = []
    wrong_kind: list[_Item] = []
    cast: list[str] = []
    for key, want in model_state.items():
        have = ckpt_state.get(key)
        if have is None:
            continue
        if tuple(have.shape) != tuple(want.shape):
            misshaped.append((key, f" {_fmt_shape(have.shape)} vs model {_fmt_shape(want.shape)}"))
        elif _kind(have.dtype) != _kind(want.dtype):
            dtypes = (
                f" {str(have.dtype).removeprefix('torch.')} vs model {str(want.dtype).removeprefix('torch.')}"
            )
            wrong_kind.append((key, dtypes))
        elif have.dtype != want.dtype:
            cast.append(key)
    if cast:
        first = ckpt_state[cast[0]].dtype
        log.info(
            "checkpoint for %s: %d tensors (e.g. %s, %s) will be cast to the model's dtype",
            model_name,
            len(cast),
            cast[0],
            str(first).removeprefix("torch."),
        )
    if not (missing or unexpected or misshaped or wrong_kind):
        return
    hint = ""
    if candidates is not None:
        ckpt_shapes = {k: tuple(v.shape) for k, v in ckpt_state.items()}
        model_shapes = {k: tuple(v.shape) for k, v in model_state.items()}
        hint = _best_candidate(ckpt_shapes, model_shapes, model_name, candidates)
    groups = [
        ("missing", [(k, "") for k in missing], len(missing)),
        ("unexpected", [(k, "") for k in unexpected], len(unexpected)),
        ("mis-shaped", misshaped, len(misshaped)),
        ("wrong-dtype", wrong_kind, len(wrong_kind)),
    ]
    message = ""
    for n, width in ((3, 200), (2, 200), (1, 200), (3, 48), (2, 40), (1, 40), (1, 24)):
        message = _compose(model_name, groups, hint, n, width)
        if len(message) <= _MAX_MESSAGE:
            break
    raise _error(message)


def load_checkpoint_into(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    model_name: str,
    candidates: Iterable[tuple[str, Mapping[str, tuple[int, ...]]]] | None = None,
    ema: bool = False,
) -> None:
    """Read ``path``, check it fits ``model`` and load it (strict), casting floats to the model's dtypes."""
    ckpt = read_state_dict(path, ema)
    model_state = model.state_dict()
    check_compatible(model_state, ckpt, model_name, candidates)
    state: StateDict = {}
    for key, want in model_state.items():
        have = ckpt.get(key)
        if have is None:  # only a fillable num_batches_tracked gets here
            state[key] = torch.zeros_like(want)
        elif have.is_floating_point() and want.is_floating_point() and have.dtype != want.dtype:
            state[key] = have.to(want.dtype)
        else:
            state[key] = have
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise _error(f"checkpoint {path} does not fit {model_name}: {_reason(exc)}") from None
