"""The fine-tuning section of a run's config: where and how the image encoders are fine-tuned
(:mod:`fewshot.training.encoder`; WiSE-FT, CLIP-LoRA and CoOp run at the same shots and seeds).

Declared here, where the training layer reads them; :mod:`fewshot.run.config` assembles every
section into ``RunConfig``. Imports no torch (see :mod:`fewshot.base.fields`).
"""
from __future__ import annotations

from fewshot.base.fields import Field, bool_check, float_check, int_check, list_check, make_section, str_check
from fewshot.data.data_config import check_seeds

__all__ = ["FIELDS"]

FIELDS = make_section(
    "fine-tuning",
    Field("ft_shots", tuple, (), list_check(int_check(1), "integers >= 1", allow_empty=True),
          "shots at which the encoders are fine-tuned (fewshot.training.encoder, CoOp); () = all"),
    Field("ft_seeds", tuple, (), lambda n, v: () if v in ([], ()) else check_seeds(n, v),
          "seeds at which they are; () = all"),
    Field("ft_epochs", int, 10, int_check(1), "encoder fine-tuning epochs"),
    Field("ft_lr", float, 3e-5, float_check(0.0, 1.0), "encoder fine-tuning AdamW rate (WiSE-FT's); LoRA trains at 10x"),
    Field("ft_batch_size", int, 256, int_check(1), "encoder fine-tuning batch size (split across GPUs under torchrun)"),
    Field("ft_alphas", tuple, (0.0, 0.25, 0.5, 0.75, 1.0), list_check(float_check(0.0, 1.0, lo_open=False), "numbers in [0, 1]"),
          "WiSE-FT path of fine-tuned encoders"),
    Field("ft_recipe", str, "suite", str_check(choices=("suite", "wise-ft")),
          "encoder fine-tuning recipe: \"suite\" or \"wise-ft\" (mlfoundations/wise-ft's: fewshot.training.encoder)"),
    Field("grad_checkpointing", bool, False, bool_check,
          "recompute activations in backward (less GPU memory); always on GPUs < 20 GiB", runtime=True),
)
