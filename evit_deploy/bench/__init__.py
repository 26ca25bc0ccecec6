"""The latency harness: measure PyTorch eager and exported artifacts side by side, report beside the paper."""
