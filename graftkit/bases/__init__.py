"""Where a pre-trained base comes from: named ImageNet bases and personal model files."""
