"""Layer 5, training: the trainer of small heads and of image encoders, optimisers, Fisher, checkpoints, distributed helpers."""
