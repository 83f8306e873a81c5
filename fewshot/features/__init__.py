"""Layer 3, features: preprocessing, image loaders (CPU and GPU decoding), kept pixels, the verified feature cache."""
