"""What the user asked an export for, checked before any heavy work (no torch import: bad input fails at once).

:func:`preflight` resolves the subject (a zoo card, or a subject the caller gives), the profile, the precision,
the input size, the batch and the output folder, and refuses what can never work (unknown names, sizes over the
limits, a batch over the profile's maximum, an output folder that is not ours, a missing checkpoint or calibration
folder, a ``quant`` setting no precision recipe of the profile's formats honours) with one line.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import EXPORT, FORMATS
from ..errors import CheckpointError, EvitError
from ..files import check_replaceable
from ..limits import LIMITS
from ..runtime.cpu import precision_problem
from ..tasks import task_spec
from ..zoo.cards import ModelCard, get_card
from .profiles import AUTO, ExportProfile, load_profile
from .recipes import calibrates, recipe_problems
from .subjects import ExportSubject, zoo_subject


@dataclass
class ExportRequest:
    model: str
    target: str = "cpu-ort"
    weights: str | None = None
    imgsz: tuple[int, ...] | None = None
    batch: int | None = None
    precision: str | None = None
    output: str | None = None
    calib: str | None = None  # folder of calibration images for full-integer int8
    force: bool = False  # move a non-export output folder aside instead of refusing
    allow_large_input: bool = False  # lift the input-size limit (limits.Limits)
    ema: bool = False  # load the checkpoint's EMA weights (state_dict_ema / model_ema)
    sensitivity: bool = False  # int8: write the per-layer sensitivity table
    max_drop: float | None = None  # int8: keep sensitive layers float until the drop (points) is within this
    accuracy_drop: Callable[[Path], float] | None = None  # int8: the drop of a candidate ONNX, measured on a dataset
    sign: str | None = None  # private key: sign the finished folder (every file) as the last step
    sign_password: str | None = None  # the private key's password, when it is encrypted


@dataclass
class Resolved:
    """A checked request: everything the pipeline needs to start."""

    subject: ExportSubject
    profile: ExportProfile
    precision: str
    input_size: tuple[int, int]
    batch: int
    output: Path
    precision_note: str = ""  # how --precision auto chose


def resolve_size(card: ModelCard | ExportSubject, profile: ExportProfile, imgsz: tuple[int, ...] | None,
                 allow_large_input: bool = False) -> tuple[int, int]:
    size = (imgsz[0], imgsz[-1]) if imgsz else tuple(profile.input_size.get(card.task) or card.input_size)
    h, w = int(size[0]), int(size[1])
    task_spec(card.task).check_input_size(card.name, (h, w))
    problem = LIMITS.input_size_problem(h, w, max_pixels=2**62 if allow_large_input else None)
    if problem:
        raise EvitError(f"input size {problem} (exports this large take minutes and tens of GB); "
                        "pass --allow-large-input if you really want it")
    return h, w


def resolve_batch(profile: ExportProfile, batch: int | None) -> int:
    if batch is None:
        return profile.batch.size
    if batch < 1:
        raise EvitError(f"batch must be >= 1, got {batch}")
    if batch > profile.batch.max:
        kind = "dynamic batch" if profile.batch.dynamic else "static batch"
        raise EvitError(f"target {profile.name} takes a {kind} of at most {profile.batch.max} (its batch.max); "
                        f"got {batch}")
    return batch


def resolve_precision(profile: ExportProfile, precision: str | None) -> tuple[str, str]:
    """(the precision to export, a note on how ``auto`` chose it or ""). A precision this machine's CPU cannot
    run (bf16 without AVX512_BF16/AMX) is refused: it could not be validated, nor run here; ``auto`` skips it."""
    chosen = precision or profile.precisions[0]
    if chosen not in profile.precisions:
        raise EvitError(f"target {profile.name} does not offer precision '{chosen}' "
                        f"(it offers: {', '.join(profile.precisions)})")
    if chosen == AUTO:
        passed = []
        for candidate in profile.auto:
            problem = precision_problem(candidate)
            if problem is None:
                why = f"; skipped {', '.join(passed)}" if passed else ""
                return candidate, f"--precision auto chose {candidate}: the first of {', '.join(profile.auto)} " \
                                  f"this machine runs{why}"
            passed.append(f"{candidate} ({problem})")
        raise EvitError(f"target {profile.name}: --precision auto found none of {', '.join(profile.auto)} that this "
                        f"machine runs: {'; '.join(passed)}")
    problem = precision_problem(chosen)
    if problem:
        fallback = " (or --precision auto, which picks what this machine runs)" if AUTO in profile.precisions else ""
        others = [p for p in profile.precisions if p not in (chosen, AUTO)]
        raise EvitError(f"cannot export {chosen} for {profile.name} here: {problem}; export {' or '.join(others)}"
                        f"{fallback}")
    return chosen, ""


def check_output(output: Path, force: bool) -> None:
    """Refuse, before any work, an output that can never be written or that holds something not ours."""
    check_replaceable(output, EXPORT, force)


def preflight(request: ExportRequest, subject: ExportSubject | None = None) -> Resolved:
    """Check ``request`` without building anything; raises a one-line EvitError. ``subject``: what to export
    when it is not the zoo card named ``request.model`` (a competitor of the paper)."""
    subject = subject or zoo_subject(get_card(request.model), request.weights, request.ema)
    profile = load_profile(request.target)
    unknown = [f for f in profile.formats if f not in FORMATS]
    if unknown:
        raise EvitError(f"target {profile.name}: unknown artifact format '{unknown[0]}' (known: {', '.join(FORMATS)})")
    precision, precision_note = resolve_precision(profile, request.precision)
    problems = recipe_problems(profile, precision, profile.formats)
    if problems:
        raise EvitError(f"target {profile.name}: {problems[0]}")
    if request.calib is not None and not calibrates(profile, precision, profile.formats):
        warnings.warn(f"--calib is only used for calibrated int8; ignored for {precision}", stacklevel=2)
    if request.sensitivity and precision != "int8":
        raise EvitError(f"--sensitivity applies to --precision int8, not {precision}")
    if request.max_drop is not None and request.max_drop < 0:
        raise EvitError(f"--max-drop must be >= 0, got {request.max_drop}")
    size = resolve_size(subject, profile, request.imgsz, request.allow_large_input)
    batch = resolve_batch(profile, request.batch)
    if request.weights is not None and not Path(request.weights).is_file():
        raise CheckpointError(f"checkpoint not found: {request.weights}")
    if request.calib is not None and not Path(request.calib).is_dir():
        exists = Path(request.calib).exists()
        raise EvitError(f"--calib must be a folder of images, but {request.calib} is a file" if exists
                        else f"--calib folder not found: {request.calib}")
    if request.sign is not None:  # a bad key fails now, not after the export's minutes of work
        from ..signing import load_private_key

        load_private_key(request.sign, request.sign_password)
    output = Path(request.output or Path("exports") / f"{subject.name}-{profile.name}")
    check_output(output, request.force)
    return Resolved(subject, profile, precision, size, batch, output, precision_note)
