"""The merging section of a run's config: the merge study's tasks, experts, adaptive rules and
experiments (:mod:`fewshot.merging.study`).

Declared here, where the merging layer reads them; :mod:`fewshot.run.config` assembles every
section into ``RunConfig``. Imports no torch (see :mod:`fewshot.base.fields`).
"""
from __future__ import annotations

from fewshot.base.fields import Field, bool_check, float_check, int_check, make_section
from fewshot.base.paths import path_setting

__all__ = ["FIELDS"]

FIELDS = make_section(
    "merging",
    Field("merge_tasks", str, "", path_setting(empty=True),
          'folder of task datasets for the merging study (fewshot.merging.study); "" = none'),
    Field("merge_backbone", str, "", path_setting(empty=True, name_or_path=True),
          'the CLIP the merge study fine-tunes and merges (a registered name or a path); "" = the run\'s backbone. '
          "WEMoE needs a ViT tower (e.g. miniclip-vit)"),
    Field("merge_shots", int, 16, int_check(2), "shots per class of each task's experts (one fold held out to choose λ)"),
    Field("merge_steps", int, 4000, int_check(1),
          "optimiser steps of each expert and of the multi-task reference (FusionBench: 4000; batch 32)"),
    Field("merge_lr", float, 1e-5, float_check(0.0, 1.0),
          "Adam rate of the experts, a cosine over the steps (FusionBench's clip_finetune: 1e-5); LoRA at 10x"),
    Field("adamerging_steps", int, 1000, int_check(0),
          "steps of every rule that adapts on unlabeled images: AdaMerging, Concrete (mask and λ each), WEMoE's routers "
          "(FusionBench: 1000); 0 = none of their rows"),
    Field("merge_robustness", bool, True, bool_check,
          "the robustness experiment: the merged encoders on the test images under 7 corruptions"),
)
