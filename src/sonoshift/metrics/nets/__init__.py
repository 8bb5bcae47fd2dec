"""ImageNet feature stacks in plain PyTorch, with torchvision's ``features.N`` parameter names."""
