"""Fine-tuning and re-encoding throughput and memory at ImageNet shapes, on one GPU or under
torchrun (one process per GPU, DistributedDataParallel):

    python bench/finetune.py --model rn50 --batch 256 --cap-gib 15       # one GPU, a T4-sized cap
    python bench/finetune.py --model vitb16 --batch 128 --checkpointing --cap-gib 15
    torchrun --nproc_per_node 2 bench/finetune.py --model rn50 --batch 256

Random-weight CLIP towers of RN50's and ViT-B/16's shapes (compute does not depend on the
values), random stored crops (256 px), the suite's own trainer (fewshot.training.encoder_loop.train: AdamW,
augmentation on the GPU, mixed precision, frozen BatchNorm) and encoder (fewshot.training.encoder.encode).
Prints one JSON row per measurement (rank 0) and appends it to bench/results.jsonl.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

from common import report, sync
from fewshot.training import distributed as dist
from fewshot.training.encoder import Recipe, build_classifier, encode
from fewshot.training.encoder_loop import train


class _Pixels:
    def __init__(self, n, size, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.data = (torch.rand(n, 3, size, size, generator=g) * 255).to(torch.uint8)

    def __len__(self):
        return len(self.data)

    def batch(self, rows):
        return self.data[torch.as_tensor(rows)]


def _model(name):
    import clip
    from fewshot.models.backbones import build_clip

    torch.manual_seed(0)
    if name == "rn50":
        return build_clip()
    return clip.model.CLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)  # ViT-B/16


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["rn50", "vitb16"], default="rn50")
    p.add_argument("--batch", type=int, default=256, help="global batch (split across processes)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--strategy", default="full")
    p.add_argument("--cap-gib", type=float, default=0, help="per-process GPU memory cap (0: none)")
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--encode", type=int, default=8192, help="images to re-encode for the per-α cost")
    args = p.parse_args()
    device = dist.init()
    if args.cap_gib:
        torch.cuda.set_per_process_memory_fraction(args.cap_gib * 2**30 / torch.cuda.get_device_properties(device).total_memory, device)
    model = _model(args.model)
    text = F.normalize(torch.randn(1000, model.text_projection.shape[1]), dim=-1)
    recipe = Recipe(epochs=1, lr=3e-5, batch_size=args.batch, checkpointing=args.checkpointing)
    clf, groups = build_classifier(model, text, 100.0, args.strategy, device, recipe)
    pool = _Pixels(args.batch * args.steps, 256)
    rows, labels = torch.arange(len(pool)), torch.randint(0, 1000, (len(pool),))
    warm = Recipe(epochs=1, lr=3e-5, batch_size=args.batch, checkpointing=args.checkpointing)
    train(clf, groups, _Pixels(args.batch * 2, 256), torch.arange(args.batch * 2), labels[:args.batch * 2], warm, device, progress=False)
    torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    train(clf, groups, pool, rows, labels, recipe, device, progress=False)
    sync(device)
    train_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    test = _Pixels(args.encode, 224, seed=1)
    encode(clf, test, device, 256)
    sync(device)
    t0 = time.perf_counter()
    encode(clf, test, device, 256)
    sync(device)
    enc_s = time.perf_counter() - t0
    if dist.is_main():
        report("finetune", {"model": args.model, "strategy": args.strategy, "global_batch": args.batch,
                            "gpus": dist.world(), "checkpointing": args.checkpointing, "cap_gib": args.cap_gib,
                            "steps_per_s": round(args.steps / train_s, 2),
                            "train_images_per_s": round(args.steps * args.batch / train_s, 1),
                            "peak_gib_per_gpu": round(peak, 2),
                            "encode_images_per_s": round(args.encode / enc_s, 1)}, device)


if __name__ == "__main__":
    main()
