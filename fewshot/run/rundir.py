"""The run folder: the one module that knows its layout. Nothing else spells a path inside a run.

Layout of a run folder (``cfg.out``)::

    config.json                          the RunConfig; written once, fixed for the folder's life
    backbone.json                        the checkpoint's identity and facts (fewshot.models.backbones.LazyBackbone)
    .lock                                held while a step writes (a second writer is refused)
    splits/shots{k}_seed{s}.json         split manifests (fewshot.data.splits)
    results/{method}.jsonl               result records (fewshot.protocol.results), replaced atomically
    fitted/{method}/shots{k}_seed{s}.pt  fitted state: hyperparameters + tensors (weights_only)
    diagnostics/{method}.json            extra data for figures (e.g. Tip-Adapter's grids)
    predictions/{method}.json            per-image val predictions (first seed, most shots)
    predictions/index.json               the images those predictions are for
    checkpoints/{method}/shots{k}_seed{s}_{part}.pt   a long fit's last complete epoch
                                         (fewshot.training.checkpoint); removed once its results are written
    analysis/{name}/shots{k}_seed{s}.pt  per-image top-3 (and a cache's snapshot) at 1, 5, 16 shots,
                                         first seed, for the qualitative analysis (fewshot.report.analysis_data)

Every write is atomic (:mod:`fewshot.base.atomic`); every read of a file the suite wrote names the file
when it is damaged, and refuses state made under another config.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterator, Optional

from fewshot.base.atomic import (atomic_torch_save, atomic_write_json, atomic_write_text,
                            remove_dead_partial_writes)
from fewshot.run.config import (RUNTIME_FIELDS, RunConfig, config_digest, read_config, save_config,
                            science_fields)
from fewshot.base.errors import ConfigError, MissingStepError, RunLockedError
from fewshot.protocol.method import Fitted, current_name

__all__ = ["RunDir"]


class RunDir:
    """Typed access to one run folder. ``writer=False`` (the other processes of a ``torchrun``
    run, which compute what rank 0 writes) reads and checks as usual but writes nothing."""

    def __init__(self, root: str | os.PathLike, writer: bool = True):
        self.root, self.writer = Path(root), writer

    # ---------------------------------------------------------------- paths (the layout)
    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def backbone_path(self) -> Path:
        return self.root / "backbone.json"

    @property
    def splits_dir(self) -> Path:
        return self.root / "splits"

    def manifest_path(self, shots: int, seed: int) -> Path:
        from fewshot.data.splits import manifest_name

        return self.splits_dir / manifest_name(shots, seed)

    def results_path(self, method: str) -> Path:
        return self.root / "results" / f"{method}.jsonl"

    def _found(self, path_of, name: str, *args) -> Path:
        """``path_of(name, *args)``, or the path under one of the name's former names
        (:func:`fewshot.methods.former_names`) where only that exists: older run folders."""
        from fewshot.methods import former_names

        path = path_of(name, *args)
        if not path.exists():
            for old in former_names(name):
                if path_of(old, *args).exists():
                    return path_of(old, *args)
        return path

    def fitted_path(self, method: str, shots: Optional[int], seed: Optional[int]) -> Path:
        name = "shot-free" if not shots else f"shots{shots}_seed{seed}"
        return self.root / "fitted" / method / f"{name}.pt"

    def diagnostics_path(self, method: str) -> Path:
        return self.root / "diagnostics" / f"{method}.json"

    def predictions_path(self, method: str) -> Path:
        return self.root / "predictions" / f"{method}.json"

    def checkpoint_path(self, method: str, shots: Optional[int], seed: Optional[int], part: str) -> Path:
        return self.root / "checkpoints" / method / f"shots{shots}_seed{seed}_{part}.pt"

    def checkpoint(self, method: str, shots: Optional[int], seed: Optional[int], digest: str):
        """``part -> Checkpoint`` for the fits of ``method`` at (shots, seed) ("main", "fold0")."""
        from fewshot.training.checkpoint import Checkpoint

        return lambda part: Checkpoint(self.checkpoint_path(method, shots, seed, part), digest,
                                       f"{method} ({shots}-shot, seed {seed}) {part}", self.writer)

    def remove_checkpoints(self, method: str) -> None:
        """Delete ``method``'s checkpoints (its results are written)."""
        if self.writer:
            shutil.rmtree(self.root / "checkpoints" / method, ignore_errors=True)

    def analysis_path(self, name: str, shots: Optional[int], seed: Optional[int]) -> Path:
        return self.root / "analysis" / self.fitted_path(name, shots, seed).relative_to(self.root / "fitted")

    # ---------------------------------------------------------------- config: set once
    def start(self, cfg: RunConfig, fresh: bool = False) -> RunConfig:
        """Create the folder for ``cfg``, or check that it already belongs to ``cfg``.

        The science fields (all but ``RUNTIME_FIELDS``) of an existing folder cannot change: a
        contradiction raises :class:`ConfigError` naming the fields, unless ``fresh``, which
        moves the old folder aside (``<out>.replaced-<time>``) and starts anew.
        """
        if self.config_path.exists():
            try:
                old = science_fields(self.read_config())
            except ConfigError as err:  # damaged, or written by another version of the suite
                old = {"config.json": f"unreadable ({err})"}
            new = science_fields(cfg)
            diff = {k: (v, new.get(k)) for k, v in old.items() if new.get(k) != v}
            if diff and fresh:
                aside = self.root.with_name(f"{self.root.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
                shutil.move(str(self.root), str(aside))
                print(f"moved the previous run to {aside}")
            elif diff:
                what = "; ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in sorted(diff.items()))
                raise ConfigError(f"{self.root} holds a run with other settings ({what}). Settings "
                                  f"are fixed once per run folder: use another `out`, or start "
                                  f"over with --fresh (the old folder is kept beside it).")
        if self.writer:
            save_config(cfg, self.config_path)
        return cfg

    def read_config(self) -> RunConfig:
        """The run's config (``config.json``)."""
        if not self.config_path.exists():
            raise MissingStepError(f"{self.config_path} is missing: start the run first (notebook "
                                   f"01, or `python -m fewshot run`).")
        return read_config(self.config_path)

    def adopt(self, requested: RunConfig, explicit: dict) -> RunConfig:
        """The config of an existing run, for a later notebook: its runtime fields may come from
        ``requested``; a science field in ``explicit`` (the notebook's overrides) must agree."""
        saved = self.read_config()
        clash = {k: (getattr(saved, k), getattr(requested, k)) for k in explicit
                 if k not in RUNTIME_FIELDS and getattr(saved, k) != getattr(requested, k)}
        if clash:
            what = "; ".join(f"{k}={b!r} here but {a!r} in {self.config_path}" for k, (a, b) in sorted(clash.items()))
            raise ConfigError(f"this notebook's parameters contradict the run: {what}. Parameters "
                              f"are set once per run, in the first notebook: change them there and "
                              f"rerun from it, or use another `out`.")
        return saved.replace(**{k: getattr(requested, k) for k in RUNTIME_FIELDS})

    @property
    def digest(self) -> str:
        """The digest of the run's records: its config's, at the device type they were made on."""
        return config_digest(self.read_config(), self.device_type())

    def device_type(self) -> str:
        """The device type the run's records were made on (their ``device_type``); "cpu" when
        none says (no records yet, or records older than the field)."""
        return next((r["device_type"] for r in self.read_records() if isinstance(r.get("device_type"), str)), "cpu")

    # ---------------------------------------------------------------- lock
    @contextlib.contextmanager
    def lock(self, what: str = "a run") -> Iterator[None]:
        """Hold the folder's lock while writing; a second writer gets :class:`RunLockedError`.
        File systems without locks (some network mounts) run unlocked."""
        import fcntl

        if not self.writer:  # rank 0 of the same torchrun holds it
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise RunLockedError(f"{self.root} is being written by another process (a run "
                                         f"or notebook); wait for it to finish, or use another "
                                         f"`out`.") from err
                yield  # no locking on this file system
                return
            try:
                f.seek(0), f.truncate(), f.write(f"{os.getpid()} {what}\n"), f.flush()
                remove_dead_partial_writes(self.root)  # a killed writer's temporary files
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ---------------------------------------------------------------- records
    def write_records(self, method: str, records: list[dict]) -> None:
        """Replace ``results/{method}.jsonl`` with ``records``, atomically."""
        from fewshot.protocol.results import dumps_records

        from fewshot.methods import former_names

        if self.writer:
            atomic_write_text(self.results_path(method), dumps_records(records))
            for old in former_names(method):  # the renamed method's older file is superseded
                self.results_path(old).unlink(missing_ok=True)

    def read_records(self, method: Optional[str] = None) -> list[dict]:
        """Records of one method, or of every method with a results file."""
        from fewshot.protocol.results import load_records

        import fewshot.methods  # noqa: F401  (the registry maps renamed records)

        if method is not None:
            return load_records(self._found(self.results_path, method))
        files = sorted((self.root / "results").glob("*.jsonl"))
        return [r for f in files for r in load_records(f)]

    # ---------------------------------------------------------------- fitted state
    def save_fitted(self, fitted: Fitted, digest: str) -> None:
        """Keep a fitted head's hyperparameters and tensors, tagged with the config digest."""
        if not self.writer:
            return
        payload = {"method": fitted.method, "shots": fitted.shots, "seed": fitted.seed,
                   "hyperparameters": json.dumps(fitted.hyperparameters, sort_keys=True),
                   "tuned_on": fitted.tuned_on, "config_digest": digest,
                   "state": {k: v.detach().cpu() for k, v in fitted.state.items()}}
        atomic_torch_save(payload, self.fitted_path(fitted.method, fitted.shots, fitted.seed))

    def load_fitted(self, method: str, shots: Optional[int], seed: Optional[int], digest: str,
                    step: str, device=None) -> Fitted:
        """A fitted head saved by :meth:`save_fitted` under the same config digest."""
        import torch

        path = self._found(self.fitted_path, method, shots, seed)
        hint = f"run the {step} step first (its notebook, or `python -m fewshot run --steps {step}`)"
        if not path.exists():
            raise MissingStepError(f"{path} is missing: {hint}.")
        try:
            data = torch.load(path, map_location=device or "cpu", weights_only=True)
            hp = json.loads(data["hyperparameters"])
            ok = data["config_digest"] == digest and current_name(data["method"]) == method
        except Exception as err:  # a cut or foreign file: say which, and how to redo it
            raise MissingStepError(f"{path} cannot be read ({type(err).__name__}); {hint}.") from err
        if not ok:
            raise MissingStepError(f"{path} was made under another config; {hint}.")
        return Fitted(method, shots, seed, hp, data["tuned_on"], data["state"])

    def save_analysis(self, name: str, shots: Optional[int], seed: Optional[int], payload: dict,
                      digest: str) -> None:
        """Keep the analysis tensors of one record name at (shots, seed), tagged with the digest."""
        if self.writer:
            atomic_torch_save({**payload, "config_digest": digest}, self.analysis_path(name, shots, seed))

    def load_analysis(self, name: str, shots: Optional[int], seed: Optional[int], digest: str) -> Optional[dict]:
        """What :meth:`save_analysis` kept, or None when absent; a damaged file, or one made under
        another config, raises :class:`MissingStepError` naming it."""
        import torch

        path = self._found(self.analysis_path, name, shots, seed)
        if not path.exists():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise MissingStepError(f"{path} cannot be read ({type(err).__name__}); rerun the step of {name}.") from err
        if data.get("config_digest") != digest:
            raise MissingStepError(f"{path} was made under another config; rerun the step of {name}.")
        return data

        # ---------------------------------------------------------------- JSON side files
    def write_json(self, path: Path, obj) -> None:
        """Write a side file (diagnostics, predictions) atomically."""
        if self.writer:
            atomic_write_json(path, obj)

    def read_json(self, path: Path, default=None):
        """A side file, or ``default`` when absent; a damaged file is named."""
        if not path.exists():
            return default
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise MissingStepError(f"{path} is damaged ({err}); rerun the step that writes it.") from err

    def diagnostics(self, method: str) -> list:
        """Diagnostics of ``method`` (a list, one entry per shots of the first seed)."""
        return self.read_json(self.diagnostics_path(method), [])

    def predictions(self) -> Optional[dict]:
        """``{"paths", "labels", "classnames", "shots", "seed", "predictions": {method: [N]}}``
        from the per-method files, or None when there are none."""
        index = self.read_json(self.root / "predictions" / "index.json")
        if index is None:
            return None
        preds = {current_name(p.stem): self.read_json(p) for p in sorted((self.root / "predictions").glob("*.json"))
                 if p.stem != "index"}
        return {**index, "predictions": preds}
