"""Export-friendly SAM prompt encoder + mask decoder for point prompts (ONNX decoder graph).

The wrapped graph takes an image embedding and point prompts in the 1024x1024 prompt frame and returns the
low-resolution mask logits and IoU predictions of all four mask tokens, reproducing the stock PyTorch
predictor (``EfficientViTSam.predict_masks``) for point-only prompts. Its I/O names and dynamic axes are the SAM
task spec's ``decoder`` graph (:mod:`evit_deploy.tasks.sam`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .sam_decoder import SAM_EMBED_DIM, SAM_IMAGE_EMBEDDING_SIZE

__all__ = ["SamOnnxDecoder", "decoder_example_inputs"]


class SamOnnxDecoder(nn.Module):
    """Prompt encoder (points only, no mask input) + mask decoder of an ``EfficientViTSam``, export-ready.

    ``forward(image_embeddings [1,256,64,64], point_coords [P,N,2], point_labels [P,N])`` returns
    ``(masks [P,4,256,256], iou_predictions [P,4])``: low-res mask logits and IoU scores of *all four* mask
    tokens. Index 0 is the single-mask output (``multimask_output=False``), indices 1..3 are the multimask
    outputs (``multimask_output=True``). Coordinates are (x, y) pixels in the 1024x1024 prompt frame;
    labels (float or int) are 1 = foreground, 0 = background, -1 = padding/ignored, 2/3 = box top-left /
    bottom-right corner. In an exported graph the label dtype is fixed by the trace (float32 for
    ``decoder_example_inputs``).

    As the stock prompt encoder does, a padding point (coords (0, 0), label -1) is appended when the prompt
    has no box; a box (its two corners as labels 2 and 3, after any points) gets none, so points, boxes and
    points + box all match ``predict_masks``. The padding token is dropped with a data-dependent Range/Gather
    (no Python control flow on values), so one graph serves both; all prompts of one call are of one kind.
    """

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        h, w = self.prompt_encoder.input_image_size
        # Divisor for (x, y); same float division as the stock ``forward_with_coords``.
        self.register_buffer("coord_scale", torch.tensor([float(w), float(h)]), persistent=False)

    def _embed_points(self, point_coords: Tensor, point_labels: Tensor) -> Tensor:
        coords = point_coords.to(torch.float32) + 0.5  # pixel centres (padding point is added afterwards)
        coords = torch.cat([coords, torch.zeros_like(coords[:, :1, :])], dim=1)
        labels = torch.cat([point_labels, torch.full_like(point_labels[:, :1], -1)], dim=1).unsqueeze(-1)

        emb = self.prompt_encoder.pe_layer._pe_encoding(coords / self.coord_scale)
        emb = torch.where(labels == -1, self.prompt_encoder.not_a_point_embed.weight, emb)
        for k, point_embed in enumerate(self.prompt_encoder.point_embeddings):
            emb = emb + (labels == k).to(emb.dtype) * point_embed.weight
        return emb

    def forward(self, image_embeddings: Tensor, point_coords: Tensor, point_labels: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(masks [P,4,256,256], iou_predictions [P,4])`` for all four mask tokens."""
        sparse = self._embed_points(point_coords, point_labels)
        has_box = (point_labels >= 2).any().to(torch.int64)
        sparse = sparse.index_select(1, torch.arange(sparse.shape[1] - has_box))  # no padding token with a box
        gh, gw = self.prompt_encoder.image_embedding_size
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, gh, gw)
        return self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )


def decoder_example_inputs(num_prompts: int = 1, num_points: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """Deterministic ``(image_embeddings [1,256,64,64], point_coords [P,N,2], point_labels [P,N] float)``."""
    gh, gw = SAM_IMAGE_EMBEDDING_SIZE
    n = SAM_EMBED_DIM * gh * gw
    image_embeddings = torch.sin(torch.arange(n, dtype=torch.float32) * 0.01).reshape(1, SAM_EMBED_DIM, gh, gw)
    idx = torch.arange(num_prompts * num_points, dtype=torch.float32).reshape(num_prompts, num_points)
    point_coords = torch.stack([(idx * 97.0 + 100.0) % 1000.0, (idx * 61.0 + 300.0) % 1000.0], dim=-1)
    point_labels = (torch.arange(num_prompts * num_points) % 2 == 0).to(torch.float32).reshape_as(idx)
    return image_embeddings, point_coords, point_labels
