"""Checkpoints of long fits (CoOp, encoder fine-tuning): a runtime reset loses at most one epoch.

A training loop given a :class:`Checkpoint` saves, at the end of every epoch, everything the next
epoch depends on: the trained tensors, the optimiser's and scheduler's (and loss scaler's) state,
the states of its random generators and of torch's global ones, the epoch, and the loop's own
running records. Run the same step again after a kill and the loop restores the last complete
epoch and goes on from there; on a CPU the result equals an uninterrupted fit's bit for bit.

The file sits in the run folder (:meth:`fewshot.run.rundir.RunDir.checkpoint_path`), is written
atomically (:mod:`fewshot.base.atomic`), read with ``weights_only=True``, and used only when it carries
the same config digest and fit name (anything else starts the fit over, with a warning). The run
removes a method's checkpoints once its results are written.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import torch

from fewshot.base.atomic import atomic_torch_save
from fewshot.base.errors import FewshotWarning

__all__ = ["Checkpoint"]


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpoint:
    """The checkpoint file of one fit: ``path``, the run's config ``digest`` and the fit's name
    (``fit``, e.g. "coop 16-shot seed 1 main"). ``writer=False`` reads but never writes (the
    other processes of a torchrun run)."""

    def __init__(self, path, digest: str, fit: str, writer: bool = True):
        self.path, self.digest, self.fit, self.writer = Path(path), digest, fit, writer

    def _load(self) -> Optional[dict]:
        if not self.path.exists():
            return None
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
            ok = data["config_digest"] == self.digest and data["fit"] == self.fit
        except Exception as err:  # a foreign or damaged file: start over, say so
            ok, why = False, f"unreadable ({type(err).__name__})"
        else:
            why = "made for another config or fit"
        if not ok:
            warnings.warn(f"checkpoint {self.path} is {why}; the fit starts over.", FewshotWarning)
            return None
        return data

    def resume(self, params: list, stateful: dict, generators: dict) -> Optional[dict]:
        """Restore the last complete epoch into ``params`` (tensors, in place), ``stateful``
        (name -> object with ``load_state_dict``: optimiser, scheduler, scaler) and
        ``generators`` (name -> torch.Generator). Returns the loop's records saved with it
        (``epoch``: epochs done, plus what :meth:`save` got as ``records``), or None: start at 0."""
        data = self._load()
        if data is None:
            return None
        if len(data["params"]) != len(params):
            warnings.warn(f"checkpoint {self.path} holds other tensors; the fit starts over.", FewshotWarning)
            return None
        with torch.no_grad():
            for p, saved in zip(params, data["params"]):
                p.copy_(saved.to(p.device))
        for name, obj in stateful.items():
            if obj is not None:
                obj.load_state_dict(data["stateful"][name])
        for name, gen in generators.items():
            gen.set_state(data["generators"][name])
        _set_rng_state(data["rng"])
        print(f"resuming {self.fit} after epoch {data['epoch']} (checkpoint {self.path})")
        return {**data["records"], "epoch": data["epoch"]}

    def save(self, epoch: int, params: list, stateful: dict, generators: dict, **records) -> None:
        """Keep the state after ``epoch`` epochs (arguments as for :meth:`resume`; ``records``:
        tensors, numbers, strings and containers of them), atomically."""
        if not self.writer:
            return
        atomic_torch_save({
            "config_digest": self.digest, "fit": self.fit, "epoch": epoch,
            "params": [p.detach().cpu().clone() for p in params],
            "stateful": {n: o.state_dict() for n, o in stateful.items() if o is not None},
            "generators": {n: g.get_state() for n, g in generators.items()},
            "rng": _rng_state(), "records": records}, self.path)
