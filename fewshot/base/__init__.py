"""Layer 0, the base: user-facing errors, atomic writes, path settings. Imports nothing else of the suite."""
