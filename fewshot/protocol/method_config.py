"""The method families' sections of a run's config: the hyperparameters of each built-in method
that a user may change (epochs, learning rates, batch sizes, grids), defaults equal to the
published recipes each method's docstring cites.

Why here and not in ``fewshot/methods/``: importing anything under ``fewshot.methods`` runs its
package ``__init__``, which registers every method and so imports torch; reading a config must
not (``python -m fewshot --help``, :mod:`fewshot.base.fields`). The fields are still each method's
own: named after it (``coop_lr``), read by its module through :func:`setting`, listed under its
heading in ``run --help``. Tip-Adapter-F's ``epochs``, ``lr`` and ``train_batch_size`` keep their
short names because existing run folders' ``config.json`` carry them.
"""
from __future__ import annotations

from fewshot.base.fields import Field, float_check, int_check, list_check, make_section, str_check

__all__ = ["FIELDS", "DEFAULT_LAMBDAS", "setting"]

DEFAULT_LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_EPOCHS, _LR, _BATCH = int_check(1), float_check(0.0, 10.0), int_check(1)

FIELDS = (
    *make_section(
        "Tip-Adapter and Tip-Adapter-F (fewshot.methods.tip_adapter)",
        Field("beta_max", float, 7.0, float_check(0.1), "Tip-Adapter grid: beta in [0.1, beta_max) ..."),
        Field("beta_steps", int, 200, int_check(1), "... in this many steps"),
        Field("alpha_max", float, 3.0, float_check(0.1), "alpha in [0.1, alpha_max) ..."),
        Field("alpha_steps", int, 20, int_check(1), "... in this many steps"),
        Field("epochs", int, 20, _EPOCHS, "Tip-Adapter-F epochs (fixed; the oracle keeps the best epoch on test)"),
        Field("lr", float, 1e-3, _LR, "Tip-Adapter-F AdamW learning rate"),
        Field("train_batch_size", int, 256, _BATCH, "Tip-Adapter-F batch size"),
        Field("tip_f_recipe", str, "auto", str_check(choices=("auto", "fp32", "official")),
              'Tip-Adapter-F: "fp32", "official" (fp16 state: fewshot.training.optim), "auto" (CV)'),
    ),
    *make_section(
        "WiSE-FT (fewshot.methods.wise_ft)",
        Field("lambdas", tuple, DEFAULT_LAMBDAS, list_check(float_check(0.0, 1.0, lo_open=False), "numbers in [0, 1]"),
              "WiSE-FT mixing coefficients evaluated"),
    ),
    *make_section(
        "CoOp (fewshot.methods.coop)",
        Field("coop_epochs", int, 50, _EPOCHS, "CoOp epochs (its ImageNet recipe: 50)"),
        Field("coop_lr", float, 2e-3, _LR, "CoOp SGD learning rate (its ImageNet recipe: 0.002)"),
        Field("coop_batch_size", int, 32, _BATCH, "CoOp batch size (its ImageNet recipe: 32)"),
    ),
    *make_section(
        "CLIP-LoRA (fewshot.methods.clip_lora)",
        Field("clip_lora_iters", int, 500, int_check(1), "CLIP-LoRA iterations per shot (the official 500: 8,000 at 16 shots)"),
    ),
    *make_section(
        "CLIP-Adapter (fewshot.methods.clip_adapter)",
        Field("clip_adapter_epochs", int, 50, _EPOCHS, "CLIP-Adapter epochs (the official 50)"),
        Field("clip_adapter_lr", float, 2e-3, _LR, "CLIP-Adapter SGD learning rate (the official 0.002)"),
    ),
    *make_section(
        "CLAP (fewshot.methods.clap)",
        Field("clap_epochs", int, 300, _EPOCHS, "CLAP epochs (the official 300)"),
        Field("clap_lr", float, 0.1, _LR, "CLAP SGD learning rate (the official 0.1)"),
    ),
    *make_section(
        "TaskRes (fewshot.methods.taskres)",
        Field("taskres_lr", float, 2e-4, _LR, "TaskRes Adam learning rate (the official 2e-4)"),
    ),
    *make_section(
        "APE-T (fewshot.methods.ape)",
        Field("ape_t_epochs", int, 20, _EPOCHS, "APE-T epochs (the official 20)"),
        Field("ape_t_lr", float, 1e-4, _LR, "APE-T AdamW learning rate (the official 1e-4)"),
    ),
    *make_section(
        "LP++ (fewshot.methods.lp_plus_plus)",
        Field("lp_pp_epochs", int, 300, _EPOCHS, "LP++ epochs (the official 300)"),
    ),
)

_DEFAULTS = {f.name: f.default for f in FIELDS}


def setting(ctx, name: str):
    """``ctx.cfg.<name>``, or the field's default when the context carries no config or one
    without it (tests pass a bare namespace): a method reads its hyperparameters through this."""
    cfg = getattr(ctx, "cfg", None)
    return getattr(cfg, name) if cfg is not None and hasattr(cfg, name) else _DEFAULTS[name]
