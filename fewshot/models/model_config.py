"""The models section of a run's config: the backbone, where it is downloaded, the prompt set.

Declared here, where the models layer reads them; :mod:`fewshot.run.config` assembles every
section into ``RunConfig``. Imports no torch (see :mod:`fewshot.base.fields`).
"""
from __future__ import annotations

from fewshot.base.fields import Field, make_section, str_check
from fewshot.base.paths import path_setting

__all__ = ["FIELDS"]


def _templates():
    from fewshot.models.templates import list_templates

    return list_templates()


FIELDS = make_section(
    "model",
    Field("backbone", str, "miniclip-rn", path_setting(name_or_path=True),
          "registered name (fewshot.models.backbones.list_backbones) or a path"),
    Field("download_root", str, "", path_setting(empty=True),
          'where named CLIP checkpoints are downloaded ("" = ~/.cache/clip)', runtime=True),
    Field("templates", str, "clip80", str_check(choices=_templates), "prompt set: fewshot.models.templates.list_templates()"),
)
