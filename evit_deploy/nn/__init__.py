"""EfficientViT building blocks, backbones, heads and whole models (architecture.md)."""
