"""The runtime section of a run's config: where a run writes, which of its methods run, the
device, progress bars. These change how or where a run executes (``Field.runtime``), never its
numbers, except ``device``: see :func:`fewshot.run.config.config_digest`, which covers the
resolved device type instead.

Declared here, where the run layer reads them; :mod:`fewshot.run.config` assembles every section
into ``RunConfig``. Imports no torch (see :mod:`fewshot.base.fields`).
"""
from __future__ import annotations

from fewshot.base.fields import Field, bool_check, fail, list_check, make_section, str_check
from fewshot.base.paths import path_setting

__all__ = ["FIELDS"]


def _report_method(name, v):
    if v == "":
        return v  # automatic: no registry needed
    from fewshot.methods import current_name, list_record_names

    v = current_name(v) if isinstance(v, str) else v  # a renamed method's older name
    if not isinstance(v, str) or (v and v not in list_record_names()):
        fail(name, f'"" (automatic) or one of {", ".join(list_record_names())}', v)
    return v


def _methods(name, v):
    if isinstance(v, (list, tuple)) and not v:
        return ()  # every registered method
    from fewshot.methods import current_name, list_methods

    if isinstance(v, (list, tuple)):
        v = [current_name(m) if isinstance(m, str) else m for m in v]  # renamed methods' older names
    return list_check(str_check(choices=list_methods), "method names", allow_empty=True)(name, v)


FIELDS = make_section(
    "runtime",
    Field("out", str, "runs/miniworld", path_setting(),
          "the run folder (fewshot.run.rundir): results, splits, config.json", runtime=True),
    Field("report_dir", str, "report", path_setting(), "where notebook 07 / `fewshot report` write the report", runtime=True),
    Field("report_method", str, "", _report_method,
          'the method the report\'s qualitative analysis shows; "" = the best honest learnable one at 16 shots', runtime=True),
    Field("methods", tuple, (), _methods, "methods to evaluate (fewshot.methods.list_methods()); () = all registered", runtime=True),
    Field("device", str, "auto", str_check(pattern=r"auto|cpu|mps|cuda(:\d+)?", desc="auto, cpu, mps, cuda or cuda:N"),
          '"auto" (cuda if present), "cpu", "cuda", "cuda:1", ...; the resolved device type enters the digest '
          "of the records made (it sets the cache products' dtype, autocast, decode=auto)", runtime=True),
    Field("progress", bool, True, bool_check, "progress bars", runtime=True),
)
