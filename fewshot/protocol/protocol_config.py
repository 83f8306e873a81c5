"""The protocol section of a run's config: how hyperparameters are chosen (inside the shots, or on
the test set as the official scripts do), which recipe the peers run, and a step's time budget.

Declared here, where the protocol layer reads them; :mod:`fewshot.run.config` assembles every
section into ``RunConfig``. Imports no torch (see :mod:`fewshot.base.fields`).
"""
from __future__ import annotations

from fewshot.base.fields import Field, bool_check, float_check, int_check, make_section, str_check

__all__ = ["FIELDS"]

FIELDS = make_section(
    "protocol",
    Field("oracle", bool, False, bool_check, "tune on the test set, as the official scripts do (labelled test-oracle)"),
    Field("recipe", str, "default", str_check(choices=("default", "official")),
          "peers' recipe (fewshot.protocol.recipes): \"default\" (each method's docstring) or \"official\" "
          "(the authors' dtype, crops, context)"),
    Field("cv_folds", int, 4, int_check(2), "folds over the shots for choosing a hyperparameter inside them (fewshot.protocol.selection: "
          "WiSE-FT's lambda, Tip-Adapter's grid, the probes' and CoOp's α, the merge study's held-out fold)"),
    Field("time_budget", float, 0.0, float_check(0.0, lo_open=False),
          "minutes a long step may take (its measured estimate, fewshot.protocol.budget); 0 = no limit", runtime=True),
)
