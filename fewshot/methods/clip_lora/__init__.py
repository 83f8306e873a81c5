"""``clip-lora``: CLIP-LoRA as published (:mod:`fewshot.methods.clip_lora.loop`; Zanella & Ben Ayed, CVPRW 2024,
``MaxZanella/CLIP-LoRA`` at 358f0d7), and WiSE-FT of it, which no peer offers.

The record is the adapted model after ``clip_lora_iters × shots`` iterations (the official 500 ×
shots unless the config scales it), scored with its own text head ("a photo of a {}." through the
LoRA text encoder) on features of the LoRA image encoder. On a ViT image tower this is the
published method; on a ResNet (RN50, the mini-CLIP) the image side's LoRA sits in the attention
pool: the suite's stated variant (``hyperparameters["variant"]``).

Companions: ``wise-clip-lora`` scales both towers' updates by α (``W₀ + α·ΔW``, so the head moves
with the text encoder), α chosen on held-out shots as for the encoders (:mod:`.finetune`: trained
again without fold 0, every ``ft_alphas`` point scored on it; 0.5 at 1 shot; on test in an oracle
run); ``wise-clip-lora-default`` is α = 0.5, the WiSE-FT authors' advice when no shifted data is
at hand (``tuned_on: default``). Runs at ``ft_shots`` × ``ft_seeds``, as the other encoders.
"""
from __future__ import annotations

import time

import torch

from fewshot.protocol import selection
from fewshot.protocol.budget import Plan, Work, seconds_per
from fewshot.methods.clip_lora.loop import LoraClip, LoraRecipe, total_iterations, train_lora
from fewshot.training.encoder import encode
from fewshot.features.pixels import features_of
from fewshot.methods.finetune import _Noise
from fewshot.protocol.metrics import top1
from fewshot.features.pixels import train_size
from fewshot.protocol.method import Head, Method, Source, register
from fewshot.merging.interpolate import DEFAULT_LAMBDA

__all__ = ["recipe_of", "variant_of"]


def recipe_of(cfg) -> LoraRecipe:
    """The run's CLIP-LoRA recipe: the published one, ``clip_lora_iters`` iterations per shot."""
    return LoraRecipe(iters_per_shot=cfg.clip_lora_iters)


def variant_of(model) -> str:
    """``published`` on a ViT image tower, ``resnet-attention-pool`` on a ResNet."""
    return "resnet-attention-pool" if hasattr(model.visual, "attnpool") else "published"


def _hyperparameters(recipe: LoraRecipe, shots: int, model, device) -> dict:
    """What a clip-lora record says of its recipe."""
    return {"rank": recipe.rank, "lora_alpha": recipe.alpha, "dropout": recipe.dropout, "lr": recipe.lr,
            "batch_size": recipe.batch_size, "iterations": total_iterations(recipe, shots),
            "iters_per_shot": recipe.iters_per_shot, "variant": variant_of(model),
            "precision": "fp16+grad-scaler" if torch.device(device).type == "cuda" else "fp32"}


def _top1(feats, head, labels) -> float:
    return top1(feats @ head.T, labels)


class _LoraPath:
    """A trained :class:`LoraClip` at WiSE-FT's points α: each point's head (``s·f·t(α)ᵀ``, the
    LoRA text tower's, computed once) and its test-set encoder (made once, run when read)."""

    def __init__(self, clf: LoraClip, ctx, label: str):
        self.clf, self.ctx, self.label, self.heads, self.encoders = clf, ctx, label, {}, {}

    def head_at(self, a: float):
        if a not in self.heads:
            self.heads[a] = self.clf.at(a).clone()
        return lambda f, h=self.heads[a]: f.float() @ h.T

    def encoder_at(self, a: float):
        if a == 0.0:
            return None  # the frozen image encoder: the cached features
        if a not in self.encoders:
            clf, ctx = self.clf, self.ctx

            def features(name, a=a):
                clf.at(a)
                return encode(clf, ctx.encoder.eval_pixels(name), ctx.device, ctx.cfg.ft_batch_size, ctx.progress,
                              f"{self.label}: α={a} on {name}")
            self.encoders[a] = features
        return self.encoders[a]


def rebuild(fitted, shots, ctx) -> Head:
    """A fresh :class:`LoraClip` with the saved low-rank updates (``lora.<i>``) at α = 1: the head
    of its text tower, and its image tower re-encoding a test set's pixels."""
    enc = ctx.encoder
    clf = LoraClip(enc.model, enc.classnames, ctx.logit_scale, ctx.device, recipe_of(ctx.cfg), shots.seed)
    if len(clf.lora) != len(fitted.state):
        raise ValueError(f"clip-lora: {len(fitted.state)} saved updates for {len(clf.lora)} adapted tensors")
    with torch.no_grad():
        for i, p in enumerate(clf.lora):
            p.copy_(fitted.state[f"lora.{i}"])
    path = _LoraPath(clf, ctx, f"clip-lora ({shots.shots}-shot, seed {shots.seed}), rebuilt")
    return fitted.head(path.head_at(1.0), path.encoder_at(1.0))


def fit(shots, ctx) -> Head:
    """Train CLIP-LoRA on the shots; WiSE-FT of it as the companions."""
    enc, cfg, dev = ctx.encoder, ctx.cfg, ctx.device
    recipe = recipe_of(cfg)
    pool, pool_rows = enc.pool()
    rows = torch.tensor([pool_rows[p] for p in shots.paths])
    labels, alphas = shots.labels.cpu(), list(cfg.ft_alphas)
    label = f"clip-lora ({shots.shots}-shot, seed {shots.seed})"

    def fresh():
        return LoraClip(enc.model, enc.classnames, ctx.logit_scale, dev, recipe, shots.seed)

    def inside():
        held = selection.fold_masks(shots.ranks, cfg.cv_folds)[0].cpu()
        clf = fresh()
        train_lora(clf, pool, rows[~held], labels[~held], shots.shots, recipe, dev, shots.seed, ctx.progress,
                   f"{label}, held-out fold")
        def score(a):  # the head and the image encoder at α
            head = clf.at(a)
            return _top1(features_of(clf, pool, rows[held].tolist(), dev), head, shots.labels[held].to(dev))
        scores = [score(a) for a in alphas]
        return alphas[selection.first_best(scores)], scores

    clf, start = fresh(), time.perf_counter()
    history = train_lora(clf, pool, rows, labels, shots.shots, recipe, dev, shots.seed, ctx.progress, label)
    seconds = time.perf_counter() - start
    lora_path = _LoraPath(clf, ctx, label)
    head_at, encoder_at = lora_path.head_at, lora_path.encoder_at

    def on_test(s):
        scores = [_top1(s.feats if a == 0.0 else encoder_at(a)(s.name), clf.at(a), s.labels) for a in alphas]
        return alphas[selection.first_best(scores)], scores

    choice = selection.choose(ctx, shots.shots, default=DEFAULT_LAMBDA, inside=inside, on_test=on_test)
    a = choice.value
    path = sorted({0.0, a, DEFAULT_LAMBDA, 1.0})  # the test sets are encoded at these points only
    wise = Head(head_at(a), choice.tuned_on, {"alpha": a}, extra={"alpha_scores": choice.curve,
                "alphas_scored": alphas}, encoder=encoder_at(a),
                sweep=tuple(({"alpha": x}, head_at(x), encoder_at(x)) for x in path))
    default = Head(head_at(DEFAULT_LAMBDA), "default", {"alpha": DEFAULT_LAMBDA},
                   encoder=encoder_at(DEFAULT_LAMBDA))
    state = {f"lora.{i}": p.detach().clone() for i, p in enumerate(clf.lora)}
    return Head(head_at(1.0), "none", _hyperparameters(recipe, shots.shots, enc.model, dev), state=state, encoder=encoder_at(1.0),
                companions={"wise-clip-lora": wise, "wise-clip-lora-default": default},
                extra={"history": history, "trainable_params": sum(p.numel() for p in clf.lora),
                       "train_seconds": seconds})


def plan(shots, ctx) -> Plan:
    """Iterations of one (shots, seed) (again without fold 0 when α is chosen inside the shots) and
    the test sets through the encoder at up to three points of the α path, timed on the real model."""
    cfg, dev, recipe = ctx.cfg, ctx.device, recipe_of(ctx.cfg)
    fits = 1 + selection.tunes_inside(ctx, shots.shots)
    iters = fits * total_iterations(recipe, shots.shots)
    res, bs, labels = ctx.encoder.model.visual.input_resolution, recipe.batch_size, shots.labels.cpu()

    def fresh():
        return LoraClip(ctx.encoder.model, ctx.encoder.classnames, ctx.logit_scale, dev, recipe)

    def step_probe(m=min(len(labels), 2 * bs)):
        probe = LoraRecipe(iters_per_shot=2, batch_size=bs)
        pool = _Noise(m, train_size(res))
        return seconds_per(lambda clf: train_lora(clf, pool, torch.arange(m), labels[:m], 1, probe, dev, 0, False),
                           2, setup=fresh)

    def encode_probe(m=256):
        pool = _Noise(m, res)
        return seconds_per(lambda clf: encode(clf, pool, dev, cfg.ft_batch_size), m, setup=fresh)

    images = 3 * sum(ctx.encoder.eval_counts.values())
    works = [Work(f"clip-lora ({shots.shots}-shot, seed {shots.seed}): {fits} fit(s) × "
                  f"{total_iterations(recipe, shots.shots)} iterations", iters, f"steps of batch {bs}", "clip-lora step"),
             Work("clip-lora: the test sets at 3 point(s) of the α path", images, "images", "clip-lora encode")]

    def cheaper(share):
        n = recipe.iters_per_shot
        return [f"--set clip_lora_iters={max(1, int(n * share))}"] if n > 1 else []

    return Plan(works, {"clip-lora step": step_probe, "clip-lora encode": encode_probe}, cheaper)


SOURCE = Source("Zanella & Ben Ayed, CVPRW 2024", "MaxZanella/CLIP-LoRA", "358f0d7361f59e66c0b2d0b672a3dafb143a759b",
                ("main.py", "lora.py", "run_utils.py", "loralib/layers.py", "loralib/utils.py"))

register(Method("clip-lora", fit, step="finetune", rebuild=rebuild, needs_encoder=True, budget=plan, learnable=True, source=SOURCE,
                shots_field="ft_shots", seeds_field="ft_seeds", companions=("wise-clip-lora", "wise-clip-lora-default"),
                summary="LoRA on q/k/v of both encoders, no head (Zanella & Ben Ayed, 2024)"))
