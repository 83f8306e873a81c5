"""The merging section of a run's config: the merge study's tasks, experts and AdaMerging
(:mod:`fewshot.merging.study`).

Declared here, where the merging layer reads them; :mod:`fewshot.run.config` assembles every
section into ``RunConfig``. Imports no torch (see :mod:`fewshot.base.fields`).
"""
from __future__ import annotations

from fewshot.base.fields import Field, float_check, int_check, make_section
from fewshot.base.paths import path_setting

__all__ = ["FIELDS"]

FIELDS = make_section(
    "merging",
    Field("merge_tasks", str, "", path_setting(empty=True),
          'folder of task datasets for the merging study (fewshot.merging.study); "" = none'),
    Field("merge_shots", int, 16, int_check(2), "shots per class of each task's experts (one fold held out to choose λ)"),
    Field("merge_epochs", int, 40, int_check(1), "epochs of each expert (and of the multi-task reference)"),
    Field("merge_lr", float, 1e-4, float_check(0.0, 1.0), "AdamW rate of the experts (batch 32, as FusionBench's experts)"),
    Field("adamerging_steps", int, 1000, int_check(0),
          "AdaMerging's Adam steps (fewshot.merging.adamerging; FusionBench: 1000); 0 = no AdaMerging rows"),
)
