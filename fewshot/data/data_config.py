"""The data section of a run's config: which dataset, which k-shot splits, which shifted sets.

Declared here, where the data layer reads them; :mod:`fewshot.run.config` assembles every section
into ``RunConfig``. Imports no image code (see :mod:`fewshot.base.fields`).
"""
from __future__ import annotations

from fewshot.base.fields import SEED_MAX, Field, bool_check, fail, int_check, list_check, make_section
from fewshot.base.paths import expand_path, path_setting
from fewshot.data import DEFAULT_SEEDS, DEFAULT_SHOTS

__all__ = ["FIELDS", "check_seeds"]

check_seeds = list_check(int_check(0, SEED_MAX), "integers in [0, 2**63 - 1]")


def _shift_sets(name, v):
    from fewshot.data.shifts import list_shift_kinds

    if not isinstance(v, dict):
        fail(name, "an object {name: [path, kind]}", v)
    out = {}
    for key, spec in v.items():
        if not isinstance(spec, (list, tuple)) or len(spec) != 2 or not all(isinstance(s, str) for s in spec):
            fail(f"{name}.{key}", "[path, kind]", spec)
        if spec[1] not in list_shift_kinds():
            fail(f"{name}.{key} kind", f"one of {', '.join(list_shift_kinds())}", spec[1])
        out[str(key)] = (expand_path(spec[0], f"config field '{name}.{key}'"), spec[1])
    return out


FIELDS = make_section(
    "data",
    Field("data", str, "data/miniworld", path_setting(), "dataset root in the ImageNet-1K-16shot layout"),
    Field("shots", tuple, DEFAULT_SHOTS, list_check(int_check(1), "integers >= 1"), "k-shot settings to run"),
    Field("seeds", tuple, DEFAULT_SEEDS, check_seeds, "split seeds; results are mean ± std over these"),
    Field("shift_sets", dict, {}, _shift_sets, "name -> [path, kind]; {} = found beside data"),
    Field("skip_bad_images", bool, False, bool_check, "skip (and count) undecodable images instead of stopping"),
)
