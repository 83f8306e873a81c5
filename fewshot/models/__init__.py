"""Layer 2, models: CLIP backbones and their loading, BatchNorm folding, prompt templates and the text head, LoRA."""
