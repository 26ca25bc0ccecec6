"""EfficientSAM-S (Xiong et al., CVPR 2024), written from the paper and the authors' ``build_efficient_sam``
settings (ViT-S encoder: patch 16, 384 channels, 12 blocks, 6 heads, MLP ratio 4, global attention; neck to 256
channels). Module names follow the authors' ``EfficientSam`` (``image_encoder.blocks.0.attn.qkv``,
``mask_decoder.transformer.layers.0.mlp.layers.0.0``, ``prompt_encoder.bbox_top_left_embeddings``), so their
checkpoint's keys match.

The encoder's position embeddings are those of a 224×224 ViT-S (14×14 + a class token), resized bicubically to the
token grid at run time, as the authors' encoder does. The prompt encoder and mask decoder are written as module
trees only (what the paper's parameter count covers and a checkpoint holds): the harness times the image encoder,
as for every SAM model here, so their forward pass is not needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import sam_neck

STRIDE = 16
PRETRAIN_GRID = 14  # 224 / 16


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class ImageEncoderViT(nn.Module):
    """``[B, 3, H, W]`` → image embeddings ``[B, 256, H/16, W/16]``."""

    def __init__(self, dim: int = 384, depth: int = 12, heads: int = 6, patch: int = 16) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(dim, patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, PRETRAIN_GRID * PRETRAIN_GRID + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.neck = sam_neck(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        b, c, h, w = x.shape
        pos = self.pos_embed[:, 1:].reshape(1, PRETRAIN_GRID, PRETRAIN_GRID, c).permute(0, 3, 1, 2)
        if (h, w) != (PRETRAIN_GRID, PRETRAIN_GRID):
            pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
        x = (x + pos).flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.neck(x.transpose(1, 2).reshape(b, c, h, w))


# ------------------------------------------------------------------ prompt encoder and mask decoder (not timed)


class MLPBlock(nn.Module):
    """``num_layers`` Linear+activation layers (``layers.i.0``) then a Linear (``fc``)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.GELU()) for d in dims)
        self.fc = nn.Linear(hidden, out_dim)


class TwoWayAttention(nn.Module):
    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, inner) for _ in range(3))
        self.out_proj = nn.Linear(inner, dim)


class TwoWayAttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.self_attn = TwoWayAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = TwoWayAttention(dim, heads, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, dim, 1)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = TwoWayAttention(dim, heads, 2)


class TwoWayTransformer(nn.Module):
    def __init__(self, dim: int = 256, depth: int = 2, heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TwoWayAttentionBlock(dim, heads, mlp_dim) for _ in range(depth))
        self.final_attn_token_to_image = TwoWayAttention(dim, heads, 2)
        self.norm_final_attn = nn.LayerNorm(dim)


class MaskDecoder(nn.Module):
    def __init__(self, dim: int = 256, masks: int = 4, upscaling: tuple[int, int] = (64, 32)) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(masks, dim)
        layers, in_ch = [], dim
        for i, ch in enumerate(upscaling):
            norm = nn.GroupNorm(1, ch) if i < len(upscaling) - 1 else nn.Identity()
            layers.append(nn.Sequential(nn.ConvTranspose2d(in_ch, ch, 2, 2), norm, nn.GELU()))
            in_ch = ch
        self.final_output_upscaling_layers = nn.ModuleList(layers)
        self.output_hypernetworks_mlps = nn.ModuleList(MLPBlock(dim, dim, in_ch, 2) for _ in range(masks))
        self.iou_prediction_head = MLPBlock(dim, 256, masks, 2)


class PromptEncoder(nn.Module):
    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.invalid_points = nn.Embedding(1, dim)
        self.point_embeddings = nn.Embedding(1, dim)
        self.bbox_top_left_embeddings = nn.Embedding(1, dim)
        self.bbox_bottom_right_embeddings = nn.Embedding(1, dim)


class EfficientSamParts(nn.Module):
    """The whole model as the checkpoint holds it (for the parameter count): encoder, prompt encoder, decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = ImageEncoderViT()
        self.prompt_encoder = PromptEncoder()
        self.mask_decoder = MaskDecoder()


def efficientsam_encoder() -> ImageEncoderViT:
    return ImageEncoderViT()


def efficientsam_whole() -> EfficientSamParts:
    return EfficientSamParts()
