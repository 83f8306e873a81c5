"""Layer 11, the worlds: the mini-world, the task world and the ImageNet-shaped rehearsal data, with the tiny CLIP they train."""
