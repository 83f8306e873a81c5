"""Pretraining the mini-world's tiny CLIP, contrastively, on a captioned corpus of the same world.

The corpus shows every (shape, colour) concept in both styles (photo and sketch), captioned with
the *common* colour names only: the class names that :mod:`fewshot.world.generate` gives half
the colours ("tenne", "smalt", ...) never occur, as obscure ImageNet names rarely occur on the
web. Only 100 concepts exist, so a batch holds many captions of the same concept: the loss treats
all of them as positives (CLIP's symmetric cross-entropy with soft targets).

The model is ``clip.model.CLIP`` built by :func:`fewshot.models.backbones.build_clip`, saved by
:func:`fewshot.models.backbones.save_checkpoint` and loaded by ``clip.load(path)`` like any OpenAI
checkpoint. Its image tower is one of :data:`TOWERS` (:func:`make_config`): ``rn``, a ModifiedResNet
as RN50 (``miniclip-rn``, the defaults of :class:`PretrainConfig`), or ``vit``, a VisionTransformer
as ViT-B/32 (``miniclip-vit``: the blocks that FusionBench's models and WEMoE's routers are made of).
Both see the same corpus, in the same order, under the same loss.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

import clip
from fewshot.base.atomic import atomic_write_text
from fewshot.base.errors import ConfigError
from fewshot.models.backbones import build_clip, save_checkpoint
from fewshot.training.schedules import warmup_times_cosine
from fewshot.features.preprocess import center_pixels, normalize_pixels
from fewshot.world.generate import SIZES
from fewshot.world.render import COLORS, SHAPES, render

__all__ = ["PretrainConfig", "TOWERS", "CAPTIONS", "make_config", "make_corpus", "pretrain",
           "reference_accuracy"]

CAPTIONS = {
    "photo": ["a photo of a {}.", "a {}.", "a picture of a {}.", "a close-up photo of a {}.",
              "a bad photo of a {}.", "a bright photo of a {}.", "a dark photo of the {}.",
              "itap of a {}.", "a photo of the {}.", "a low resolution photo of a {}.",
              "a blurry photo of a {}.", "a good photo of the {}."],
    "sketch": ["a sketch of a {}.", "a drawing of a {}.", "a doodle of a {}.", "a sketch of the {}.",
               "art of a {}.", "a drawing of the {}.", "an outline of a {}.", "a {}."],
}


@dataclass
class PretrainConfig:
    """Settings of the tiny CLIP's pretraining; saved in the training log."""

    seed: int = 0  # corpus and initialisation seed
    corpus_size: int = 40000  # captioned images (half photos, half sketches)
    epochs: int = 30  # passes over the corpus (stops early at max_minutes)
    max_minutes: float = 18.0  # wall-clock budget for the optimisation loop
    batch_size: int = 256
    lr: float = 2e-3  # AdamW peak learning rate (linear warm-up, cosine decay)
    weight_decay: float = 0.05
    warmup_steps: int = 200
    image_resolution: int = 64  # input side; a multiple of 32 (the ResNet's stride) or of the patch
    vision_width: int = 16  # ModifiedResNet stem width (RN50: 64); ViT token width, a multiple of 64
    vision_layers: tuple | int = (1, 1, 1, 1)  # bottleneck blocks per stage (RN50: 3, 4, 6, 3); an int: ViT blocks
    vision_patch_size: int | None = None  # ViT patch side (ViT-B/32: 32); None for a ResNet tower
    embed_dim: int = 64  # joint embedding size (RN50: 1024)
    context_length: int = 16  # text tokens (OpenAI: 77)
    transformer_width: int = 64  # text transformer width; heads = width // 64
    transformer_layers: int = 2
    workers: int = 2  # processes rendering the corpus
    threads: int = 2  # torch CPU threads
    device: str = "cpu"  # miniclip-rn was trained on the CPU; "cuda" for quick trials (and miniclip-vit)

    def __post_init__(self):
        """Check the tower's shape before any work: build it on the meta device (no memory, no
        random draws), so :func:`~fewshot.models.backbones.build_clip` keeps the one copy of its rules."""
        if isinstance(self.vision_layers, list):
            self.vision_layers = tuple(self.vision_layers)  # --set vision_layers=[1,1,1,1]
        if not isinstance(self.vision_layers, int) and self.vision_patch_size is not None:
            raise ConfigError(f"vision_patch_size={self.vision_patch_size} is for a ViT tower (an int "
                              f"vision_layers), not the ResNet stages {self.vision_layers}")
        try:
            with torch.device("meta"):
                build_clip(self.embed_dim, self.image_resolution, self.vision_layers, self.vision_width,
                           self.context_length, self.transformer_width, self.transformer_layers,
                           vision_patch_size=self.vision_patch_size)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"PretrainConfig: {err}") from err


# The image towers of `world train-clip --tower NAME`: overrides of PretrainConfig's defaults (rn).
# vit: 6 pre-LN blocks of width 128 (2 heads) on 8x8 patches, 64 tokens + the class token at 64 px;
# its image tower has 1.23 M weights (the rn's: 1.33 M), 4.50 M in all. Everything else is the rn's:
# in a trial on one H200 (30 epochs, 2.1 min) it reached 0.388 reference top-1 at lr 2e-3 (0.356
# at 1e-3; miniclip-rn: 0.402).
TOWERS = {
    "rn": {},
    "vit": {"vision_layers": 6, "vision_width": 128, "vision_patch_size": 8},
}


def make_config(tower: str = "rn", overrides: dict | None = None) -> PretrainConfig:
    """The :class:`PretrainConfig` of a tower in :data:`TOWERS`, with ``overrides`` (``--set``) on top;
    an unknown tower or field fails here, listing the known ones."""
    if tower not in TOWERS:
        raise ConfigError(f"unknown tower {tower!r}; use one of: {', '.join(TOWERS)}")
    known = [f.name for f in dataclasses.fields(PretrainConfig)]
    unknown = sorted(set(overrides or {}) - set(known))
    if unknown:
        raise ConfigError(f"unknown PretrainConfig field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return PretrainConfig(**{**TOWERS[tower], **(overrides or {})})


def _corpus_item(job) -> tuple[bytes, int, str]:
    seed, res = job
    rng = random.Random(seed)
    concept = rng.randrange(len(SHAPES) * len(COLORS))
    shape, color = SHAPES[concept // len(COLORS)], list(COLORS)[concept % len(COLORS)]
    style = "photo" if seed % 2 == 0 else "sketch"
    img = render(shape, color, style, rng, size=rng.choice(SIZES))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)  # the same codec as the dataset
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    caption = rng.choice(CAPTIONS[style]).format(f"{color} {shape}")
    return center_pixels(img, res).numpy().tobytes(), concept, caption  # clip's preprocessing, CHW


def make_corpus(size: int, res: int, seed: int, workers: int = 2):
    """Render the corpus: uint8 images [N, 3, res, res], concept ids [N], captions [N]."""
    jobs = [(seed * 10_000_000 + i, res) for i in range(size)]
    with ProcessPoolExecutor(workers) as pool:
        items = list(tqdm(pool.map(_corpus_item, jobs, chunksize=256), total=size,
                          desc="corpus", leave=False))
    pixels = torch.frombuffer(bytearray(b"".join(i[0] for i in items)), dtype=torch.uint8)
    images = pixels.view(size, 3, res, res)
    return images, torch.tensor([i[1] for i in items]), [i[2] for i in items]


def _loss(model, images, tokens, concepts) -> torch.Tensor:
    img = F.normalize(model.encode_image(images), dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.T  # [B, B]
    same = (concepts[:, None] == concepts[None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)  # every caption of the concept is a positive
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@torch.no_grad()
def reference_accuracy(backbone, workdir: str | os.PathLike) -> float:
    """Zero-shot top-1 (fraction) of ``backbone`` on a fixed subset: the first 5 val images per
    class of the world with seed 0, template ``single``. Stored in the training log so a test can
    check that the committed checkpoint still loads to the same model."""
    from fewshot.data.datasets import ImageSet, list_images
    from fewshot.features.encode import image_features
    from fewshot.protocol.metrics import topk_accuracy
    from fewshot.world.generate import CLASSES, make_world
    from fewshot.models.text_head import build_text_classifier, zeroshot_logits

    root = make_world(Path(workdir) / "reference-world", per_class={"train": 0, "val": 5, "shift/sketch": 0},
                      workers=1)
    items = [(f"val/{w}/{f}", i) for i, (w, *_) in enumerate(CLASSES) for f in list_images(root / "val" / w)]
    subset = ImageSet("val-reference", root, items, list(range(len(CLASSES))))
    feats = F.normalize(image_features(backbone, subset, Path(workdir) / "cache", progress=False).feats.float(), dim=-1)
    weights = build_text_classifier(backbone.model, [c[3] for c in CLASSES], "single", backbone.device, progress=False)
    logits = zeroshot_logits(feats, weights, backbone.logit_scale)
    return topk_accuracy(logits, torch.tensor(subset.labels), ks=(1,))[1]


def _optimizer(model, cfg: PretrainConfig):
    """AdamW (weight decay on matrices but embeddings), warm-up then cosine per step:
    (optimiser, scheduler, steps per epoch)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = cfg.corpus_size // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_times_cosine(total, cfg.warmup_steps))
    return opt, sched, steps_per_epoch


def _reference(out) -> dict:
    """The reloaded checkpoint's :func:`reference_accuracy`, as the log records it."""
    import tempfile

    from fewshot.models.backbones import load_backbone

    with tempfile.TemporaryDirectory() as tmp:
        return {"subset": "val, first 5 images per class, world seed 0", "templates": "single",
                "top1": reference_accuracy(load_backbone(str(out)), tmp)}


def pretrain(cfg: PretrainConfig, out: str | os.PathLike, progress: bool = True,
             reference: bool = True) -> dict:
    """Train, save ``out`` (TorchScript archive), ``out.sha256`` and ``out.log.json``; return the log.

    With ``reference``, the reloaded checkpoint's :func:`reference_accuracy` is recorded too.
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    images, concepts, captions = make_corpus(cfg.corpus_size, cfg.image_resolution, cfg.seed,
                                             cfg.workers)
    device = torch.device(cfg.device)
    images, concepts = images.to(device), concepts.to(device)
    tokens = clip.tokenize(captions, context_length=cfg.context_length).to(device)
    corpus_s = time.time() - t0
    model = build_clip(cfg.embed_dim, cfg.image_resolution, cfg.vision_layers, cfg.vision_width,
                       cfg.context_length, cfg.transformer_width, cfg.transformer_layers,
                       vision_patch_size=cfg.vision_patch_size).float().to(device)
    model.train()
    opt, sched, steps_per_epoch = _optimizer(model, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    history, t1, step = [], time.time(), 0
    for epoch in range(cfg.epochs):
        order = torch.randperm(cfg.corpus_size, generator=gen).to(device)  # one copy per epoch
        running = 0.0
        for b in tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", disable=not progress, leave=False):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = normalize_pixels(images[idx])
            flip = (torch.rand(len(idx), generator=gen) < 0.5).to(device)  # CPU stream: same draws on any device
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = _loss(model, x, tokens[idx], concepts[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            running += float(loss.detach())
        history.append({"epoch": epoch + 1, "loss": running / steps_per_epoch,
                        "logit_scale": float(model.logit_scale.exp()),
                        "minutes": (time.time() - t1) / 60})
        if progress:
            print(f"epoch {epoch + 1}: loss {history[-1]['loss']:.4f}", flush=True)
        if (time.time() - t1) / 60 > cfg.max_minutes:
            break
    sha = save_checkpoint(model.eval().cpu(), out)
    atomic_write_text(Path(str(out)).with_suffix(".sha256"), f"{sha}  {Path(out).name}\n")
    log = {"config": dataclasses.asdict(cfg), "sha256": sha, "steps": step,
           "corpus_seconds": corpus_s, "train_minutes": (time.time() - t1) / 60,
           "torch": torch.__version__, "history": history,
           "size_bytes": os.path.getsize(out)}
    if reference:
        log["reference"] = _reference(out)
    atomic_write_text(Path(str(out)).with_suffix(".log.json"), json.dumps(log, indent=1) + "\n")
    return log
