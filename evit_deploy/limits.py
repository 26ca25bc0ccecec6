"""Bounds on sizes that come from input (command line, manifests, HTTP payloads), with their defaults in one place.

They exist so that a typo or a hostile file fails in well under a second with a clear message, instead of
allocating until the machine runs out of memory. Where a user may really want more, the CLI offers an override
(``export --allow-large-input``; a custom profile's ``batch.max``; ``serve --max-bytes/--max-pixels``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_side: int = 4096  # largest exported input height or width (Cityscapes full resolution is 1024x2048)
    max_input_pixels: int = 2048 * 4096  # largest exported input H*W: 4x Cityscapes' 1024x2048
    max_batch: int = 1024  # largest batch any export or manifest may declare (profiles set their own max)
    max_manifest_bytes: int = 8 * 2**20  # export.json
    max_image_pixels: int = 25_000_000  # a decoded image (24 MP phone photo); decompression-bomb guard
    max_request_bytes: int = 16 * 2**20  # an HTTP request body
    max_prompt_file_bytes: int = 64 * 2**20  # a JSONL of SAM prompts by video frame

    def input_size_problem(self, h: int, w: int, max_pixels: int | None = None) -> str | None:
        """Why an input size of H x W is refused (None = accepted)."""
        pixels = max_pixels or self.max_input_pixels
        if h <= 0 or w <= 0:
            return f"{h}x{w} is not a positive size"
        if max(h, w) > self.max_side and max_pixels is None:
            return f"{h}x{w} exceeds the largest side of {self.max_side} pixels"
        if h * w > pixels:
            return f"{h}x{w} has {h * w / 1e6:.1f} MP, over the limit of {pixels / 1e6:.1f} MP"
        return None


LIMITS = Limits()
