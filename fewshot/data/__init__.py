"""Layer 1, data: image decoding, dataset folder layouts, robustness shifts, dataset checks, seeded k-shot splits."""

DEFAULT_SHOTS = (1, 2, 4, 5, 8, 16)  # the k-shot settings a run evaluates unless told otherwise
DEFAULT_SEEDS = (1, 2, 3)  # the split seeds; results are mean ± std over these
# (here rather than in splits, so that reading a config imports no image code)
