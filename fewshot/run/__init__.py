"""Layer 8, a run: its config, its folder, its resources, preflight checks, the pipeline over steps, the multi-GPU launch."""
