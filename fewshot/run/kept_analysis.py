"""What a run keeps for the report's qualitative analysis (top-3 predictions, a method's ``explain``
snapshot), written during the run; :mod:`fewshot.report.analysis_data` reads it back."""
from __future__ import annotations

from fewshot.methods import get_method, list_learnable, list_methods
from fewshot.protocol.analysis import top_predictions
from fewshot.run.rundir import RunDir

__all__ = ["ANALYSIS_SHOTS", "analysis_shots", "save_analysis", "step_of"]

ANALYSIS_SHOTS = (1, 5, 16)  # the shot counts the course asks about


def analysis_shots(shots) -> list[int]:
    """The shot counts of :data:`ANALYSIS_SHOTS` among ``shots`` (a config's ``shots``)."""
    return [k for k in ANALYSIS_SHOTS if k in tuple(shots)]


def step_of(name: str) -> str:
    """The run step that produces the record name ``name`` (a method or a companion)."""
    owner = next((m for m in list_methods() if name in (m, *get_method(m).companions)), None)
    if owner is None:
        raise KeyError(f"unknown method {name!r}")
    return get_method(owner).step


def save_analysis(rundir: RunDir, method, head, shots, ctx, val, digest: str, val_of=None) -> None:
    """Keep what the analysis needs of one fit (first seed): see the module's docstring.

    method: the :class:`~fewshot.protocol.method.Method`; head its fitted Head; shots its Shots (None
    when shot-free); val the val EvalSet (feats [N, D]); ``val_of(encoder)``: val's features
    through a head's own encoder [N, D] (default: ``encoder("val")``, one more pass).
    """
    cfg = ctx.cfg
    k = None if method.shot_free else shots.shots
    if k is not None and k not in analysis_shots(cfg.shots):
        return
    seed = None if k is None else shots.seed
    for name, h in [(method.name, head), *head.companions.items()]:
        payload = {}
        wanted = method.shot_free or name in list_learnable() or name == cfg.report_method
        if wanted and (h.encoder is None or name == cfg.report_method):
            feats = val.feats if h.encoder is None else (val_of or (lambda e: e("val")))(h.encoder)
            payload["top3_classes"], payload["top3_probs"] = top_predictions(h.logits, feats)
        if name == method.name and method.explain is not None:
            payload["cache"] = method.explain(shots, ctx, head, val)
        if payload:
            rundir.save_analysis(name, k, seed, payload, digest)
