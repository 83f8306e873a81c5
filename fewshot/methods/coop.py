"""CoOp (Zhou et al., IJCV 2022): the prompt's context words become learned vectors.

    prompt_c = [SOS, v₁ … v_M, the tokens of "<class name>.", EOS]     v: M = 4 learned vectors,
                                                                       initialised from "a photo of a"
    t_c = CLIP's text encoder on prompt_c (read at EOS), logits = s · f · normalise(t)ᵀ

The text encoder is frozen (an fp32 copy); the image features come from the cache, one augmented
view per epoch. Recipe: CoOp's ImageNet ``rn50_ep50_ctxv1`` (SGD, lr 0.002 (``cfg.coop_lr``),
momentum 0.9, weight decay 5e-4, batch 32 (``cfg.coop_batch_size``), 50 epochs (``cfg.coop_epochs``),
one warm-up epoch at 1e-5, then cosine per epoch); the last epoch
is kept, as CoOp does (``tuned_on: none``). The text encoder runs for every class at every step,
which is what makes CoOp slow at 1,000 classes.

Its companion ``wise-coop`` interpolates the context vectors between their initialisation (the
hand-written prompt "a photo of a <class>.") and the learned ones, α chosen on held-out shots as
for the encoders (CoOp retrained without fold 0), 0.5 at 1 shot; ``wise-coop-default`` is α = 0.5
at every shot count, the WiSE-FT authors' advice when no held-out data is trusted (``tuned_on:
default``).

``coop-16`` is the paper's headline ImageNet setting (KaiyangZhou/CoOp ``scripts/coop/main.sh
imagenet rn50_ep50 end 16 … False``: 16 context vectors drawn from N(0, 0.02²), ``CTX_INIT ""``,
one context shared by all classes, the class name at the end), with the same recipe and no
companion (an interpolation towards a random context means nothing). Recipes (``cfg.recipe``):
``default`` trains on the cache's views (0.5–1); ``official`` on a fresh 0.08–1 crop and flip of
every shot each epoch (:class:`fewshot.features.crops.FreshViews`), as CoOp's Dassl loader draws them. Both
run the text blocks in bf16 on a GPU, where CoOp's ``PREC`` is fp16.
"""
from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F

from fewshot import _clip_compat
from fewshot.protocol import selection
from fewshot.protocol.budget import Plan, Work, fit_steps, seconds_per
from fewshot.protocol.metrics import top1
from fewshot.protocol.method import Head, Method, Source, register
from fewshot.protocol.method_config import setting
from fewshot.protocol.recipes import recipe_for, training_views
from fewshot.training.heads import train_head
from fewshot.training.schedules import warmup_cosine_per_epoch
from fewshot.merging.interpolate import DEFAULT_LAMBDA

__all__ = ["PromptParts", "prompt_parts", "encode_prompts", "INIT"]

INIT = "a photo of a"
N_RANDOM, RANDOM_STD = 16, 0.02  # the headline's context: 16 vectors from N(0, 0.02²)


def random_init(model, classnames) -> str:
    """CoOp's placeholder prefix "X X … X" of a random context: 16 tokens, or as many as the
    model's context leaves beside SOS, the longest "<class name>." and EOS (a stated variant for
    the mini-world's 16-token CLIP; ImageNet's 77 tokens hold all 16)."""
    clip = _clip_compat.import_clip()
    longest = int(max(len(t.nonzero()) for t in clip.tokenize([f"{c}." for c in classnames], truncate=True))) - 2
    return " ".join(["X"] * max(1, min(N_RANDOM, model.context_length - 2 - longest)))
SOURCE = Source("Zhou et al., IJCV 2022", "KaiyangZhou/CoOp", "ff61507c790454bce7c5052c3ac39e60772f1f89",
                ("trainers/coop.py", "configs/trainers/CoOp/rn50_ep50.yaml", "scripts/coop/main.sh"))
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4  # the rate and batch are cfg.coop_lr (0.002) and cfg.coop_batch_size (32)
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


class PromptParts:
    """The fixed parts of every class's prompt and the initial context: ``prefix`` [C, 1, W]
    (SOS), ``ctx`` [M, W], ``suffix`` [C, L−1−M, W] (class tokens, ".", EOS, padding), ``eot``
    [C] (the EOS position, where the text feature is read), and the text tower (fp32 copy).

    With ``truncate`` (the default) L is the longest prompt's EOS position + 1 instead of the
    model's context length (77): the text encoder is causal, so the tokens after every EOS never
    reach a feature, and dropping them gives the same features (a test) at a fraction of the
    cost (ImageNet's longest "a photo of a <class>." ends at token 20 or so)."""

    def __init__(self, model, classnames, init: str = INIT, device=None, truncate: bool = True):
        clip = _clip_compat.import_clip()
        device = device or model.token_embedding.weight.device
        n_ctx = len(clip.tokenize(init)[0].nonzero()) - 2  # minus SOS and EOS
        tokens = clip.tokenize([f"{init} {name}." for name in classnames],
                               context_length=model.context_length, truncate=True).to(device)
        length = int(tokens.argmax(dim=-1).max()) + 1 if truncate else tokens.shape[1]
        tokens = tokens[:, :length]  # EOS has the largest token id
        tower = {n: copy.deepcopy(getattr(model, n)).float().to(device).requires_grad_(False)
                 for n in ("transformer", "ln_final", "token_embedding")}
        self.transformer, self.ln_final = tower["transformer"], tower["ln_final"]
        for block in self.transformer.resblocks:  # the causal mask, cut to the same length
            if block.attn_mask is not None:
                block.attn_mask = block.attn_mask[:length, :length]
        self.positional = model.positional_embedding.detach().float().to(device)[:length]
        self.projection = model.text_projection.detach().float().to(device)
        with torch.no_grad():
            emb = tower["token_embedding"](tokens)
        self.prefix, self.suffix = emb[:, :1], emb[:, 1 + n_ctx:]
        self.ctx = emb[0, 1:1 + n_ctx].clone()
        self.eot = tokens.argmax(dim=-1)


def prompt_parts(model, classnames, init: str = INIT, device=None, truncate: bool = True) -> PromptParts:
    """:class:`PromptParts` of ``classnames`` (``truncate``: see there)."""
    return PromptParts(model, classnames, init, device, truncate)


def encode_prompts(parts: PromptParts, ctx: torch.Tensor) -> torch.Tensor:
    """Normalised text features [C, D] of the prompts with context ``ctx`` [M, W]: CLIP's
    ``encode_text`` with the context embeddings in place of the words'. While training (grad
    enabled) each block's activations are recomputed in the backward pass, and on a GPU the
    blocks run in bf16: all C prompts go through the encoder at every step (1,000 prompts of up to 77 tokens
    for ImageNet), which would otherwise hold gigabytes of activations."""
    from torch.utils.checkpoint import checkpoint

    C = parts.prefix.shape[0]
    x = (torch.cat([parts.prefix, ctx[None].expand(C, -1, -1), parts.suffix], dim=1) + parts.positional).permute(1, 0, 2)
    cast = torch.autocast("cuda", dtype=torch.bfloat16) if x.is_cuda else contextlib.nullcontext()
    with cast:
        for block in parts.transformer.resblocks:
            x = checkpoint(block, x, use_reentrant=False) if torch.is_grad_enabled() else block(x)
    x = parts.ln_final(x.float().permute(1, 0, 2))
    return F.normalize(x[torch.arange(C, device=x.device), parts.eot] @ parts.projection, dim=-1)


def _train(parts, views, labels, scale, seed, progress, what, hp, checkpoint=None):
    """The learned context and its history; ``hp``: (epochs, lr, batch size) of :func:`_recipe`."""
    epochs, lr, batch = hp
    ctx = torch.nn.Parameter(parts.ctx.clone())
    n = labels.numel()
    steps = max(1, n // batch) if n >= batch else 1
    opt = torch.optim.SGD([ctx], lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    out = train_head([ctx], lambda x: scale * x @ encode_prompts(parts, ctx).T, views, labels,
                     optimizer=opt, schedule=warmup_cosine_per_epoch(epochs, steps, lr), epochs=epochs,
                     batch_size=batch, seed=seed, progress=progress, what=what,
                     drop_last=n >= batch, checkpoint=checkpoint)
    return ctx.detach(), out["history"]


def _recipe(ctx) -> tuple:
    """(epochs, lr, batch size) of the run: ``coop_epochs``, ``coop_lr``, ``coop_batch_size``."""
    return setting(ctx, "coop_epochs"), setting(ctx, "coop_lr"), setting(ctx, "coop_batch_size")


def _text(parts: PromptParts, context: torch.Tensor) -> torch.Tensor:
    """The text head [C, D] of the prompts with ``context`` [M, W] (no gradient)."""
    with torch.no_grad():
        return encode_prompts(parts, context)


def _text_at(parts: PromptParts, learned: torch.Tensor, a: float) -> torch.Tensor:
    """The text head [C, D] at WiSE-FT's α between the initial and the ``learned`` context [M, W]."""
    return _text(parts, (1 - a) * parts.ctx + a * learned)


def _random_parts(ctx, device) -> PromptParts:
    """CoOp-16's prompts: the "X … X" placeholders of :func:`random_init` before the class name."""
    init = random_init(ctx.encoder.model, ctx.encoder.classnames)
    return prompt_parts(ctx.encoder.model, ctx.encoder.classnames, init=init, device=device)


def _logits(text: torch.Tensor, scale: float):
    """feats [n, D] -> [n, C]: ``s·f·tᵀ`` with the text head t [C, D]."""
    return lambda f: scale * f.float() @ text.T


def rebuild(fitted, shots, ctx) -> Head:
    """CoOp's prompts (from "a photo of a") with the saved context at α = 1, through the frozen text tower."""
    parts = prompt_parts(ctx.encoder.model, ctx.encoder.classnames, device=shots.views.device)
    return fitted.head(_logits(_text_at(parts, fitted.state["context"].to(parts.ctx.device), 1.0), ctx.logit_scale))


def rebuild_random(fitted, shots, ctx) -> Head:
    """CoOp-16's prompts ("X … X" placeholders) with the saved context, through the frozen text tower."""
    parts = _random_parts(ctx, shots.views.device)
    return fitted.head(_logits(_text(parts, fitted.state["context"].to(parts.ctx.device)), ctx.logit_scale))


def fit(shots, ctx) -> Head:
    """Learn the context on the shots' cached views; WiSE-FT of the context as the companion."""
    parts = prompt_parts(ctx.encoder.model, ctx.encoder.classnames, device=shots.views.device)
    recipe, hp = recipe_for(ctx, ("official",)), _recipe(ctx)
    epochs = hp[0]
    views = training_views(shots, ctx, recipe, epochs)  # fresh crops: V = epochs
    scale, what = ctx.logit_scale, f"CoOp ({shots.shots}-shot, seed {shots.seed})"
    part = ctx.checkpoint or (lambda name: None)  # checkpoint/resume of each fit
    learned, history = _train(parts, views, shots.labels, scale, shots.seed, ctx.progress, what, hp, part("main"))

    def text_at(a: float, c1=learned) -> torch.Tensor:
        return _text_at(parts, c1, a)

    def inside():
        held = selection.fold_masks(shots.ranks, ctx.cfg.cv_folds)[0]
        kept = views.subset(~held) if hasattr(views, "subset") else views[:, ~held]
        c1, _ = _train(parts, kept, shots.labels[~held], scale, shots.seed, False, what, hp, part("fold0"))
        scores = [top1(scale * shots.center[held] @ text_at(a, c1).T, shots.labels[held]) for a in ALPHAS]
        return ALPHAS[selection.first_best(scores)], scores

    def on_test(s):
        scores = [top1(scale * s.feats @ text_at(a).T, s.labels) for a in ALPHAS]
        return ALPHAS[selection.first_best(scores)], scores

    choice = selection.choose(ctx, shots.shots, default=DEFAULT_LAMBDA, inside=inside, on_test=on_test)
    texts = {a: text_at(a) for a in ALPHAS + (choice.value,)}
    wise = Head(lambda f, t=texts[choice.value]: scale * f.float() @ t.T, choice.tuned_on,
                {"alpha": choice.value}, extra={"alpha_scores": choice.curve},
                sweep=tuple(({"alpha": a}, lambda f, t=texts[a]: scale * f.float() @ t.T) for a in ALPHAS))
    half = Head(lambda f, t=texts[DEFAULT_LAMBDA]: scale * f.float() @ t.T, "default", {"alpha": DEFAULT_LAMBDA})
    return Head(_logits(texts[1.0], scale), "none",
                {"context": len(parts.ctx), "init": INIT, "epochs": epochs, "lr": hp[1], "recipe": recipe},
                state={"context": learned}, extra={"history": history}, companions={"wise-coop": wise, "wise-coop-default": half})


def fit_random(shots, ctx) -> Head:
    """The headline CoOp: 16 random context vectors (seeded by the split), learned; no companion."""
    parts = _random_parts(ctx, shots.views.device)
    gen = torch.Generator().manual_seed(shots.seed)
    parts.ctx = (torch.randn(parts.ctx.shape, generator=gen) * RANDOM_STD).to(parts.ctx.device)
    recipe, hp = recipe_for(ctx, ("official",)), _recipe(ctx)
    views = training_views(shots, ctx, recipe, hp[0])
    what = f"CoOp-16 ({shots.shots}-shot, seed {shots.seed})"
    part = ctx.checkpoint or (lambda name: None)
    learned, history = _train(parts, views, shots.labels, ctx.logit_scale, shots.seed, ctx.progress, what,
                              hp, part("main"))
    return Head(_logits(_text(parts, learned), ctx.logit_scale), "none",
                {"context": len(parts.ctx), "init": f"random N(0, {RANDOM_STD}²)", "epochs": hp[0],
                 "lr": hp[1], "recipe": recipe}, state={"context": learned}, extra={"history": history})


def plan(shots, ctx, init: str = INIT, name: str = "coop") -> Plan:
    """The fits of one (shots, seed) (the learned context; again without fold 0 when α is chosen
    inside the shots) in optimiser steps, timed on a few real steps."""
    n, hp = shots.labels.numel(), _recipe(ctx)
    (epochs, _, batch) = hp
    sizes = [n] + ([int((~selection.fold_masks(shots.ranks, ctx.cfg.cv_folds)[0]).sum())]
                   if selection.tunes_inside(ctx, shots.shots) and init == INIT else [])
    steps = sum(fit_steps(m, batch, epochs, drop_last=True) for m in sizes)

    def probe(m=min(n, 3 * batch)):
        parts = prompt_parts(ctx.encoder.model, ctx.encoder.classnames, init, device=shots.views.device)
        views = F.normalize(shots.views[:1, :m].float(), dim=-1)
        return seconds_per(lambda: _train(parts, views, shots.labels[:m], ctx.logit_scale, 0, False, "probe",
                                          (1, hp[1], batch)), fit_steps(m, batch, 1, drop_last=True))

    def cheaper(share):  # the recipe's epochs cut to fit
        return [f"--set coop_epochs={max(1, int(epochs * share))}"] if epochs > 1 else []

    return Plan([Work(f"{name} ({shots.shots}-shot, seed {shots.seed}): {len(sizes)} fit(s) × {epochs} epochs",
                      steps, f"steps of batch {batch}", f"{name} step")], {f"{name} step": probe}, cheaper)


register(Method("coop", fit, budget=plan, step="prompt", rebuild=rebuild, needs_encoder=True, learnable=True, source=SOURCE, recipes=("official",), companions=("wise-coop", "wise-coop-default"), shots_field="ft_shots", seeds_field="ft_seeds",
                summary="learned prompt context through the frozen text encoder (Zhou et al., 2022)"))
register(Method("coop-16", fit_random, rebuild=rebuild_random, budget=lambda s, c: plan(s, c, random_init(c.encoder.model, c.encoder.classnames), "coop-16"), step="prompt", needs_encoder=True,
                learnable=True, source=SOURCE, recipes=("official",), shots_field="ft_shots", seeds_field="ft_seeds",
                summary="CoOp's headline: 16 random context vectors (Zhou et al., 2022)"))
