"""The built-in methods, registered in dependency order (see :mod:`fewshot.protocol`).

Each module registers its methods on import; :func:`list_methods` and :func:`get_method` are the
registry's public face.
"""
from fewshot.protocol import get_method, list_methods, register  # noqa: F401

from fewshot.methods import (zeroshot, class_means, tip_adapter, wise_ft, linear_probe,  # noqa: F401,E402
                             clip_adapter, gda, ape, lp_plus_plus, taskres, clap, finetune, clip_lora, coop)  # (registration, dependencies first)

__all__ = ["get_method", "list_methods", "register"]
