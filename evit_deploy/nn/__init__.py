"""EfficientViT building blocks, backbones, heads and whole models (docs/architecture.md)."""
