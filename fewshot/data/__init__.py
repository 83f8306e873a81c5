"""Layer 1, data: image decoding, dataset folder layouts, robustness shifts, dataset checks, seeded k-shot splits."""
