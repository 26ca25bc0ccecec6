"""Post-processing shared by every runtime: top-k, segmentation label maps, SAM prompt/mask transforms, encodings.

Everything follows the official evaluation code (docs/architecture.md §8); functions take and return numpy arrays.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..processing import sam_resized_size

SAM_PROMPT_FRAME = 1024  # SAM prompts and masks live in a 1024 long-side frame, also for 512-input models
SAM_LOW_RES = 256


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64, returned as float32."""
    z = logits.astype(np.float64) - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and softmax probabilities of the ``k`` largest logits of a ``[C]`` vector (ties: lower index)."""
    probs = softmax(logits)
    order = np.argsort(-logits, kind="stable")[:k]
    return order, probs[order]


@lru_cache(maxsize=32)
def bicubic_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """``[size_out, size_in]`` matrix of a 1-D bicubic resize as ``F.interpolate(mode="bicubic",
    align_corners=False)`` computes it on float32: source = in / out · (dst + 0.5) − 0.5 in float32, Keys cubic
    (a = −0.75) over the 4 nearest sources, clamped at the edges."""
    one = np.float32
    scale = one(size_in) / one(size_out)
    src = scale * (np.arange(size_out, dtype=one) + one(0.5)) - one(0.5)
    base = np.floor(src)
    t = (src - base).astype(one)
    a = one(-0.75)
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # noqa: E731 - |x| <= 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # noqa: E731 - 1 < |x| < 2
    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)  # sources base-1 .. base+2
    matrix = np.zeros((size_out, size_in), one)
    rows = np.arange(size_out)
    for k in range(4):
        np.add.at(matrix, (rows, np.clip(base.astype(np.int64) + k - 1, 0, size_in - 1)), weights[:, k])
    return torch.from_numpy(matrix)


@lru_cache(maxsize=32)
def _row_blocks(size_in: int, size_out: int) -> tuple[tuple[int, int, int, int], ...]:
    """Blocks of output rows of :func:`bicubic_matrix` with the input rows they use: ``(r0, r1, c0, c1)``. A
    block is as many rows as the upsampling factor, so each uses 4-5 input rows (all of them when downsampling)."""
    nonzero = bicubic_matrix(size_in, size_out).numpy() != 0
    step = max(1, -(-size_out // size_in))
    blocks = []
    for r0 in range(0, size_out, step):
        r1 = min(size_out, r0 + step)
        cols = np.flatnonzero(nonzero[r0:r1].any(0))
        blocks.append((r0, r1, int(cols[0]), int(cols[-1]) + 1))
    return tuple(blocks)


def resize_rows(x: torch.Tensor, size_out: int) -> torch.Tensor:
    """``[h, N]`` → ``[size_out, N]``, bicubic along the rows: the product with :func:`bicubic_matrix`, block by
    block over its band (each output row has at most 4 non-zero weights), so the work grows with the output
    size, not with output x input."""
    matrix = bicubic_matrix(x.shape[0], size_out)
    out = torch.empty((size_out, x.shape[1]), dtype=torch.float32)
    for r0, r1, c0, c1 in _row_blocks(x.shape[0], size_out):
        torch.matmul(matrix[r0:r1, c0:c1], x[c0:c1], out=out[r0:r1])
    return out


def bicubic_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[C, h, w]`` → ``[H, C, W]`` (rows first), bicubic (align_corners=False): a matrix product along the
    columns, then :func:`resize_rows` over all classes at once."""
    c, h, w = x.shape
    cols = (x.reshape(c * h, w) @ bicubic_matrix(w, size[1]).T).reshape(c, h, size[1])
    return resize_rows(cols.transpose(0, 1).reshape(h, c * size[1]), size[0]).reshape(size[0], c, size[1])


def label_map(logits: np.ndarray, size: tuple[int, int], max_elements: int = 2**25) -> np.ndarray:
    """``[C,h,w]`` stride-8 logits → ``[H,W]`` class ids: bicubic (align_corners=False) to ``size``, then argmax.

    Classes are upsampled in chunks of at most ``max_elements`` values, keeping a running maximum, so memory
    stays bounded for large images; the result equals ``interpolate(...).argmax(0)`` (each class is upsampled
    independently, ties go to the lower class id) up to float rounding. The resize is two banded matrix products
    (:func:`bicubic_resize`); with the running maximum in numpy, seg-B1's 19x64x128 logits to 512x1024 take about
    a third of the time of ``interpolate`` + ``argmax`` on one CPU core.
    Returns uint8 for at most 256 classes, else int32.
    """
    x = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    num_classes, (h, w) = x.shape[0], size
    chunk = max(1, max_elements // max(1, h * w))
    best = np.empty((h, w), np.float32)
    best_idx = np.zeros((h, w), np.uint8 if num_classes <= 256 else np.int32)
    better = np.empty((h, w), bool)
    for start in range(0, num_classes, chunk):
        part = x[start : start + chunk]
        up = (bicubic_resize(part, (h, w)) if tuple(part.shape[-2:]) != (h, w) else part.transpose(0, 1)).numpy()
        for k in range(up.shape[1]):
            if start + k == 0:
                best[:] = up[:, 0]
                continue
            np.greater(up[:, k], best, out=better)  # strict: an earlier class keeps a tie
            np.maximum(best, up[:, k], out=best)
            np.putmask(best_idx, better, start + k)
    return best_idx


def sam_input_size(original_size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the image inside the 1024 prompt frame (SAM's rounding rule)."""
    return sam_resized_size(original_size[0], original_size[1], SAM_PROMPT_FRAME)


def sam_transform_coords(coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    """(x, y) pixel coordinates of the original image → the 1024 prompt frame (``ResizeLongestSide.apply_coords``)."""
    old_h, old_w = original_size
    new_h, new_w = sam_input_size(original_size)
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] *= new_w / old_w
    out[..., 1] *= new_h / old_h
    return out.astype(np.float32)


def sam_postprocess_masks(low_res: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    """``[P,C,256,256]`` low-res logits → ``[P,C,H,W]`` logits at the original size.

    Bilinear (align_corners=False) to 1024×1024, crop to the image's part of the frame, bilinear to the original
    size, as ``Sam.postprocess_masks``. Threshold at 0 for binary masks.
    """
    x = torch.from_numpy(np.ascontiguousarray(low_res, dtype=np.float32))
    x = F.interpolate(x, (SAM_PROMPT_FRAME, SAM_PROMPT_FRAME), mode="bilinear", align_corners=False)
    h, w = sam_input_size(original_size)
    x = x[..., :h, :w]
    x = F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)
    return x.numpy()


def rle_encode(mask: np.ndarray) -> dict:
    """Run-length encoding of a binary ``[H,W]`` mask in row-major order; ``counts`` starts with a run of 0s."""
    flat = np.asarray(mask, dtype=bool).ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts, "order": "row-major"}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    h, w = rle["size"]
    values = np.arange(len(rle["counts"])) % 2 == 1
    flat = np.repeat(values, rle["counts"])
    if flat.size != h * w:
        raise ValueError(f"RLE counts sum to {flat.size}, expected {h * w}")
    return flat.reshape(h, w)


def encode_png(array: np.ndarray) -> str:
    """A uint8 ``[H,W]`` (or ``[H,W,3]``) array as base64 PNG text (lossless)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_png(text: str) -> np.ndarray:
    """Inverse of :func:`encode_png`."""
    with Image.open(io.BytesIO(base64.b64decode(text))) as img:
        return np.asarray(img)


def mask_box(mask: np.ndarray) -> list[int] | None:
    """``[x0, y0, x1, y1]`` (inclusive pixel bounds) of a binary mask, None when it is empty."""
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    if not len(ys):
        return None
    return [int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])]
