"""Whole models: classifier, segmenter, SAM (image encoder + prompt encoder + mask decoder)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import LayerNorm2d


class EfficientViTCls(nn.Module):
    """``[B,3,H,W]`` image → ``[B,num_classes]`` logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class EfficientViTSeg(nn.Module):
    """``[B,3,H,W]`` image (H, W multiples of 32) → ``[B,C,H/8,W/8]`` logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))["segout"]


class EfficientViTSamImageEncoder(nn.Module):
    """``[B,3,S,S]`` image → ``[B,256,64,64]`` image embedding."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, out_channels: int = 256) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.norm = LayerNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.neck(self.backbone(x))["sam_encoder"])


class EfficientViTSam(nn.Module):
    """EfficientViT image encoder with the stock Segment Anything prompt encoder and mask decoder.

    ``forward`` runs the image encoder only (the heavy, exportable part); ``predict_masks`` runs the prompt
    encoder and mask decoder on an embedding. ``image_size`` = (prompt/mask frame side, encoder input side).
    """

    mask_threshold = 0.0

    def __init__(
        self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module,
        image_size: Sequence[int] = (1024, 512),
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.image_size = tuple(image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(x)

    @torch.no_grad()
    def predict_masks(
        self, image_embeddings: torch.Tensor, point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None, multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res mask logits ``[B,C,256,256]`` and IoU predictions; coordinates in the 1024 prompt frame."""
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
