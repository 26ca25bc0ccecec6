"""The input sizes an export can take (no torch): one check shared by the request and the task graphs."""

from __future__ import annotations

from typing import Protocol

from ..errors import EvitError


class Named(Protocol):
    """A zoo card or an export subject: what the size check needs to know."""

    @property
    def name(self) -> str: ...

    @property
    def task(self) -> str: ...


def check_input_size(card: Named, size: tuple[int, int]) -> None:
    h, w = size
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise EvitError(f"input size {h}x{w} does not suit {card.name}: height and width must be multiples of 32")
    if card.task == "sam" and h != w:
        raise EvitError(f"input size {h}x{w} does not suit {card.name}: the SAM image encoder takes a square input")
