"""The built-in methods, one module (or folder) each, registered in dependency order by
:func:`load_methods`, which importing this package runs once (see :mod:`fewshot.protocol.method`).

:func:`list_methods` and :func:`get_method` are the registry's public face; code above this layer
reads the registry from here, so that it is always filled.
"""
import importlib

from fewshot.protocol.method import (baseline_method, current_name, former_names, get_method,  # noqa: F401
                                     list_learnable, list_methods, list_record_names, register,
                                     with_report_role)

__all__ = ["get_method", "list_methods", "list_record_names", "list_learnable", "register", "load_methods",
           "baseline_method", "with_report_role", "current_name", "former_names"]

BUILTIN = ("zeroshot", "class_means", "tip_adapter", "wise_ft", "linear_probe", "clip_adapter", "gda", "ape",
           "lp_plus_plus", "taskres", "clap", "finetune", "clip_lora", "coop")  # dependencies first


def load_methods() -> list[str]:
    """Register the built-in methods (idempotent); returns every registered name, in order."""
    for name in BUILTIN:
        importlib.import_module(f"fewshot.methods.{name}")
    return list_methods()


load_methods()
