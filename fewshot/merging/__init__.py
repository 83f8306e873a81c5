"""Layer 6, merging: weight-space rules (WiSE interpolation, task arithmetic, TIES, Fisher, RegMean, AdaMerging) and the merge study."""
