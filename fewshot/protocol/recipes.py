"""Recipes: which training recipe a method runs (``cfg.recipe``), and the text heads methods ask for.

Each peer method has the suite's ``default`` recipe, written in its module docstring, and some have
their authors' ``official`` one (``Method.recipes``): the dtype, crops and schedule of the
official code. ``cfg.recipe = "official"`` picks it for every method that has one; a method without
one runs its default. Every record carries the recipe its head used (``hyperparameters.recipe``).

A method whose published head is not the run's (TaskRes's unnormalised ``tip7+single`` mean,
CLIP-Adapter's "a photo of a {}.") asks for it through :func:`text_head`; where the run cannot
encode prompts (a run over tensors in memory) it gets the run's own head, and says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.features.crops import FreshViews

__all__ = ["RECIPES", "OFFICIAL_HEADS", "OFFICIAL_CHECKS", "recipe_for", "text_head", "official_crops", "training_views",
           "template_sets"]

RECIPES = ("default", "official")
OFFICIAL_HEADS: dict[str, str] = {}  # method -> the template set its official recipe reads (its module fills it)
OFFICIAL_CHECKS: dict = {}  # method -> (device -> what this machine lacks for its official recipe, or None)


def recipe_for(ctx, recipes: tuple) -> str:
    """The recipe a method with extra ``recipes`` runs under ``ctx``'s config: ``cfg.recipe`` if it
    has that one, else ``"default"`` (also when the context carries no config, as in tests)."""
    wanted = getattr(getattr(ctx, "cfg", None), "recipe", "default")
    return wanted if wanted in recipes else "default"


def text_head(ctx, templates: str, ensemble: str = "clip") -> tuple[torch.Tensor, str]:
    """(head [C, D] fp32, its name for the records) of template set ``templates``; ``ensemble``
    "clip" (normalised) or "raw" (the mean of unnormalised prompt embeddings). Without
    ``ctx.text_head`` the run's own head is returned, named ``"run"``."""
    make = getattr(ctx, "text_head", None)
    if make is None:
        return ctx.text_weights.float(), "run"
    name = templates if ensemble == "clip" else f"{templates} ({ensemble} mean)"
    return make(templates, ensemble).float(), name


def official_crops(cfg) -> bool:
    """``Method.encoder_for`` of the methods whose official recipe draws fresh crops every epoch."""
    return getattr(cfg, "recipe", "default") == "official"


def training_views(shots, ctx, recipe: str, epochs: int):
    """What a head trains on: the cache's views, normalised, ``[V, M, D]`` (``default``), or, for
    ``official``, :class:`fewshot.features.crops.FreshViews`: a fresh 0.08–1 crop of every shot per epoch
    through the frozen image encoder (``ctx.encoder``)."""
    if recipe != "official":
        return F.normalize(shots.views.float(), dim=-1)
    if getattr(ctx, "encoder", None) is None:
        raise ValueError("the official recipe draws fresh crops: the method needs ctx.encoder (Method.encoder_for)")
    return FreshViews(ctx.encoder, shots.paths, epochs, shots.seed, shots.views.device)


def template_sets(cfg, methods) -> list[str]:
    """The template sets a run of ``cfg`` encodes: ``cfg.templates``, and under the official recipe
    the heads that ``methods`` declare in :data:`OFFICIAL_HEADS` (sorted, each once)."""
    official = {OFFICIAL_HEADS[m] for m in methods if m in OFFICIAL_HEADS} if cfg.recipe == "official" else set()
    return sorted({cfg.templates} | official)
