"""Encoder fine-tuning (``ft-partial``, ``ft-full``, ``ft-lora``) and WiSE-FT of each.

Each method fine-tunes CLIP's image encoder with a zero-shot-initialised head
(:mod:`fewshot.training.encoder`) and reports the fine-tuned model; its companions report WiSE-FT,
``θ(α) = (1−α)·θ_zero-shot + α·θ_fine-tuned`` at the α chosen without test data
(``wise-<method>``; for LoRA α scales the low-rank update), and Fisher-weighted at that α
(``wise-<method>-fisher``, partial and full: the diagonal Fisher of both models on the k shots,
labels drawn from each model's prediction as the WiSE-FT code does). The α path (``cfg.ft_alphas``)
is scored on the held-out shots (``extra["alpha_scores"]``); the test sets are encoded only at the
chosen α, at α = 0.5 and at α = 1, and the sweep records hold those and α = 0 (zero-shot CLIP, scored
on the cached features): each further α would re-encode every test set (97,500 images at ImageNet
scale) for a diagnostic point. ``wise-<method>-default`` records α = 0.5, the WiSE-FT authors'
advice when no shifted data is at hand (``tuned_on: default``), beside the held-out choice. The
recipe is the run's ``ft_recipe`` (:func:`fewshot.training.encoder.recipe_for`), recorded as ``recipe``.

α is chosen on held-out shots: the encoder is fine-tuned once more without fold 0 of the shots
(fold = shot rank mod ``cv_folds``) and every α scored on that fold; 0.5 at 1 shot (the WiSE-FT
paper's recommendation); on test in an oracle run.
"""
from __future__ import annotations

import time

import torch

from fewshot.protocol import selection
from fewshot.protocol.budget import Plan, Work, fit_steps, seconds_per
from fewshot.training.encoder import build_classifier, encode, load_state, mix_lora, recipe_for, trainable_state
from fewshot.training.encoder_loop import train
from fewshot.training.fisher import FISHER_IMAGES, diagonal_fisher
from fewshot.protocol.metrics import top1
from fewshot.features.pixels import centre_pixels_of, features_of, train_size
from fewshot.protocol.method import Head, Method, register
from fewshot.merging.interpolate import DEFAULT_LAMBDA, interpolate

__all__ = ["set_alpha"]


HEADS = ("head", "head_bias")  # the classifier's head tensors (the bias only in the wise-ft recipe)


def set_alpha(clf, strategy: str, theta0: dict, theta1: dict, alpha: float, fishers=None) -> None:
    """Put ``clf`` at WiSE-FT's point α between its zero-shot and fine-tuned tensors."""
    if strategy == "lora":
        heads = {k: theta0[k] for k in HEADS if k in theta0}
        load_state(clf, {**theta1, **interpolate(heads, {k: theta1[k] for k in heads}, alpha)})
        mix_lora(clf, alpha)
    else:
        load_state(clf, interpolate(theta0, theta1, alpha, fishers))


def linear_head(state: dict):
    """Logits ``f·headᵀ (+ head_bias)`` of a :func:`trainable_state`-like dict: feats [n, D] -> [n, C]."""
    h, b = state["head"], state.get("head_bias")
    return lambda f: f.float() @ h.T if b is None else f.float() @ h.T + b


def _top1(feats, head_fn, labels) -> float:
    return top1(head_fn(feats), labels)


def _best(alphas, scores) -> float:
    return alphas[selection.first_best(scores)]  # ties: the smaller α


def _held_out_choice(strategy, fresh, shots, ctx, pool, rows, label, part):
    """``inside`` of :func:`fewshot.protocol.selection.choose`: fine-tune again without fold 0 of the shots
    and score every ``cfg.ft_alphas`` point on that fold: (the best α, the scores)."""
    alphas, dev = list(ctx.cfg.ft_alphas), ctx.device
    held = selection.fold_masks(shots.ranks, ctx.cfg.cv_folds)[0].cpu()
    clf, groups = fresh()
    t0 = trainable_state(clf)
    train(clf, groups, pool, rows[~held], shots.labels.cpu()[~held], recipe_for(ctx.cfg), dev, shots.seed,
          ctx.progress, f"{label}, held-out fold", part("fold0"))
    t1 = trainable_state(clf)
    scores = []
    for a in alphas:
        set_alpha(clf, strategy, t0, t1, a)
        feats = features_of(clf, pool, rows[held].tolist(), dev)
        head = linear_head({k: p.detach() for k, p in clf.named_parameters() if k in HEADS})
        scores.append(_top1(feats, head, shots.labels[held].to(dev)))
    return _best(alphas, scores), scores


def _model_fishers(clf, theta0, theta1, pool, rows, labels, dev, seed) -> list:
    """The diagonal Fisher of the zero-shot and the fine-tuned model on an even sample of the
    shots (at most ``FISHER_IMAGES``); ``clf`` is left at ``theta1``."""
    every = max(1, -(-len(rows) // FISHER_IMAGES))  # an even sample over the classes
    some = torch.arange(0, len(rows), every)
    centre = centre_pixels_of(pool, rows[some].tolist(), clf.visual.input_resolution, dev)
    fishers = []
    for theta in (theta0, theta1):
        load_state(clf, theta)
        fishers.append(diagonal_fisher(clf, centre, labels.cpu()[some], dev, "model", seed=seed))
    load_state(clf, theta1)
    return fishers


class _AlphaPath:
    """WiSE-FT's points between the zero-shot (``theta0``) and fine-tuned (``theta1``) tensors of
    ``clf``: each point's head, and its test-set encoder (made once per point, run when read)."""

    def __init__(self, clf, strategy, theta0, theta1, fishers, ctx, label):
        self.clf, self.strategy, self.theta0, self.theta1, self.fishers = clf, strategy, theta0, theta1, fishers
        self.ctx, self.label, self.encoders = ctx, label, {}

    def encoder_at(self, a: float, fisher: bool = False):
        if a == 0.0 and not fisher:
            return None  # zero-shot CLIP: the cached features
        if (a, fisher) not in self.encoders:
            def features(name, a=a, fisher=fisher):
                set_alpha(self.clf, self.strategy, self.theta0, self.theta1, a, self.fishers if fisher else None)
                return encode(self.clf, self.ctx.encoder.eval_pixels(name), self.ctx.device,
                              recipe_for(self.ctx.cfg).batch_size, self.ctx.progress, f"{self.label}: α={a} on {name}")
            self.encoders[(a, fisher)] = features
        return self.encoders[(a, fisher)]

    def head_at(self, a: float, fisher: bool = False):
        merged = interpolate(self.theta0, self.theta1, a, self.fishers if fisher else None)
        return linear_head({k: merged[k] for k in HEADS if k in merged})

    def final(self) -> tuple:
        """(logits function, encoder) of the fine-tuned model, α = 1: the method's own head."""
        return self.head_at(1.0), self.encoder_at(1.0)

    def on_test(self, s):
        """An oracle run's choice: every α scored on test set ``s`` (re-encoded at each α)."""
        alphas = list(self.ctx.cfg.ft_alphas)
        scores = [_top1(s.feats if self.encoder_at(a) is None else self.encoder_at(a)(s.name), self.head_at(a),
                        s.labels) for a in alphas]
        return _best(alphas, scores), scores

    def companions(self, choice) -> dict:
        """``wise-ft-<strategy>`` at the chosen α (the test sets encoded at it, at 0.5 and at 1
        only), ``-default`` at α = 0.5, and ``-fisher`` at the chosen α where Fishers exist."""
        a, st, alphas = choice.value, self.strategy, list(self.ctx.cfg.ft_alphas)
        path = sorted({0.0, a, DEFAULT_LAMBDA, 1.0})
        out = {f"wise-ft-{st}": Head(self.head_at(a), choice.tuned_on, {"alpha": a, "strategy": st},
                                     extra={"alpha_scores": choice.curve, "alphas_scored": alphas},
                                     encoder=self.encoder_at(a),
                                     sweep=tuple(({"alpha": x}, self.head_at(x), self.encoder_at(x)) for x in path)),
               f"wise-ft-{st}-default": Head(self.head_at(DEFAULT_LAMBDA), "default",
                                             {"alpha": DEFAULT_LAMBDA, "strategy": st},
                                             encoder=self.encoder_at(DEFAULT_LAMBDA))}
        if self.fishers is not None:
            out[f"wise-ft-{st}-fisher"] = Head(self.head_at(a, True), choice.tuned_on,
                                               {"alpha": a, "strategy": st, "fisher": "model"},
                                               encoder=self.encoder_at(a, True))
        return out


def _fit(strategy: str):
    def fit(shots, ctx) -> Head:
        enc, cfg, dev = ctx.encoder, ctx.cfg, ctx.device
        recipe = recipe_for(cfg)
        pool, pool_rows = enc.pool()
        rows = torch.tensor([pool_rows[p] for p in shots.paths])
        label = f"ft-{strategy} ({shots.shots}-shot, seed {shots.seed})"
        part = ctx.checkpoint or (lambda name: None)  # checkpoint/resume of each fit

        def fresh():
            return build_classifier(enc.model, ctx.text_weights, ctx.logit_scale, strategy, dev, recipe, shots.seed)

        clf, groups = fresh()
        theta0 = trainable_state(clf)
        start = time.perf_counter()
        history = train(clf, groups, pool, rows, shots.labels.cpu(), recipe, dev, shots.seed, ctx.progress, label,
                        part("main"))
        seconds = time.perf_counter() - start
        theta1 = trainable_state(clf)
        fishers = None if strategy == "lora" else \
            _model_fishers(clf, theta0, theta1, pool, rows, shots.labels, dev, shots.seed)
        path = _AlphaPath(clf, strategy, theta0, theta1, fishers, ctx, label)
        choice = selection.choose(ctx, shots.shots, default=DEFAULT_LAMBDA, on_test=path.on_test,
                                  inside=lambda: _held_out_choice(strategy, fresh, shots, ctx, pool, rows, label, part))
        n_trained = sum(v.numel() for v in theta1.values())
        logits, encoder = path.final()
        return Head(logits, "none", {"epochs": recipe.epochs, "lr": recipe.lr,
                                     "batch_size": recipe.batch_size, "recipe": recipe.name},
                    state=theta1, encoder=encoder, companions=path.companions(choice),
                    extra={"history": history, "trainable_params": n_trained, "train_seconds": seconds})
    fit.__doc__ = f"Fine-tune CLIP's image encoder ({strategy}) and WiSE-FT it."
    return fit


def _rebuild(strategy: str):
    def rebuild(fitted, shots, ctx) -> Head:
        """A fresh classifier at the saved fine-tuned tensors (``trainable_state``); its encoder
        re-encodes a test set's pixels."""
        dev = ctx.device
        clf, _ = build_classifier(ctx.encoder.model, ctx.text_weights, ctx.logit_scale, strategy, dev,
                                  recipe_for(ctx.cfg), shots.seed)
        theta1 = {k: v.to(dev) for k, v in fitted.state.items()}
        label = f"ft-{strategy} ({shots.shots}-shot, seed {shots.seed}), rebuilt"
        return fitted.head(*_AlphaPath(clf, strategy, trainable_state(clf), theta1, None, ctx, label).final())
    return rebuild


class _Noise:
    """``n`` random uint8 images [3, size, size] posing as a pixel cache (the cost of a step does
    not depend on the pixels): what the probes train and encode on."""

    def __init__(self, n: int, size: int):
        self.x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, rows) -> torch.Tensor:
        return self.x[torch.as_tensor(rows)]


def _plan(strategy: str):
    def plan(shots, ctx) -> Plan:
        """Fine-tuning steps of one (shots, seed) (the fit, and the fit without fold 0 when α is
        chosen inside the shots), the Fisher estimates and the test sets through the encoder at
        every α of the path, each timed on a few steps / batches of the real model."""
        cfg, dev, bs, n = ctx.cfg, ctx.device, ctx.cfg.ft_batch_size, len(shots.paths)
        res, key, labels = ctx.encoder.model.visual.input_resolution, f"ft-{strategy}", shots.labels.cpu()
        held = int(selection.fold_masks(shots.ranks, cfg.cv_folds)[0].sum()) if selection.tunes_inside(ctx, shots.shots) else 0
        steps = sum(fit_steps(m, bs, cfg.ft_epochs) for m in [n] + ([n - held] if held else []))
        # the test sets are encoded at the chosen α, at α = 0.5 and at α = 1 only (α = 0 is zero-shot),
        # plus the Fisher merge: an upper bound of 4 passes whatever the length of ft_alphas
        passes = min(3, len({a for a in cfg.ft_alphas if a != 0.0} | {DEFAULT_LAMBDA})) + (strategy != "lora")
        images = passes * sum(ctx.encoder.eval_counts.values()) + held * len(cfg.ft_alphas)
        recipe, m, k = recipe_for(cfg, epochs=1), min(n, 2 * bs), min(n, 16)

        def fresh():
            return build_classifier(ctx.encoder.model, ctx.text_weights, ctx.logit_scale, strategy, dev, recipe)

        def train_probe():
            pool = _Noise(m, train_size(res))
            return seconds_per(lambda built: train(*built, pool, torch.arange(m), labels[:m], recipe, dev, 0, False),
                               fit_steps(m, bs, 1), setup=fresh)

        def encode_probe():
            pool = _Noise(m, res)
            return seconds_per(lambda built: encode(built[0], pool, dev, bs), m, setup=fresh)

        def fisher_probe():
            x = _Noise(k, res).x.float()
            return seconds_per(lambda built: diagonal_fisher(built[0], x, labels[:k], dev), k, setup=fresh)

        works = [Work(f"{key} ({shots.shots}-shot, seed {shots.seed}): {1 + bool(held)} fit(s) × {cfg.ft_epochs} epochs",
                      steps, f"steps of batch {bs}", f"{key} step"),
                 Work(f"{key}: the test sets at {passes} point(s) of the α path", images, "images", f"{key} encode")]
        if strategy != "lora":
            works.append(Work(f"{key}: Fisher of both ends", 2 * min(n, FISHER_IMAGES), "images", f"{key} fisher"))
        return Plan(works, {f"{key} step": train_probe, f"{key} encode": encode_probe, f"{key} fisher": fisher_probe},
                    lambda share: [f"--set ft_epochs={max(1, int(cfg.ft_epochs * share))}"] if cfg.ft_epochs > 1 else [])
    return plan


for _strategy, _summary in (("partial", "the last stage of the image encoder and the head"),
                            ("full", "the whole image encoder and the head (Wortsman et al., 2022)"),
                            ("lora", "low-rank updates of the encoder's attention, and the head (Hu et al., 2022)")):
    register(Method(f"ft-{_strategy}", _fit(_strategy), step="finetune", needs_encoder=True, budget=_plan(_strategy),
                    rebuild=_rebuild(_strategy),
                    learnable=True,
                    shots_field="ft_shots", seeds_field="ft_seeds", summary=f"fine-tunes {_summary}",
                    companions=(f"wise-ft-{_strategy}", f"wise-ft-{_strategy}-default")
                    + (() if _strategy == "lora" else (f"wise-ft-{_strategy}-fisher",))))
