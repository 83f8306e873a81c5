"""Notebooks: run the suite's notebooks in order with papermill, and check their jupytext pairs.

``python -m fewshot.notebooks.runner --out DIR --config NAME [notebook ...]`` executes each
``notebooks/NN_name.ipynb`` top to bottom (kernel ``python3``, working directory ``notebooks/``,
as Jupyter opens them) with ``config``/``overrides`` injected into its ``parameters`` cell, and
stops at the first cell that fails.

``notebooks/NN_name.py`` (py:percent) are the sources. The header every notebook shares
(parameters, platform setup, the start of the run) is written once, in ``notebooks/_header.py``,
and spliced in where a source has the cell ``# fewshot: shared header``; the ``.ipynb`` files are
generated from them without outputs (``--sync``; ``make test`` fails when they drift). In the
header, notebook 01's parameters start a run (``config = "miniworld"``) and every later
notebook's continue the last run started (``config = "last"``, :mod:`fewshot.notebooks.lastrun`).

A re-run resumes: a notebook whose executed copy carries the stamp of the same inputs (its own
text, the parameters, the package's source and the notebooks before it) is skipped, so a
``make demo`` cut short continues where it stopped; ``--fresh`` executes every notebook again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from fewshot.base.atomic import atomic_write_text

__all__ = ["NOTEBOOK_DIR", "list_notebooks", "execute", "sync", "out_of_sync"]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"


HEADER_MARK = "# fewshot: shared header"


def list_notebooks() -> list[str]:
    """Notebook names in run order."""
    return sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))


def _header_values(first: bool) -> dict[str, str]:
    """The header's placeholders: notebook 01 starts a run, the later ones continue the last one."""
    if first:
        return {"FIRST_NOTEBOOK": "True", "CONFIG_HELP": (
            'the settings of the run, set here once: "miniworld" (offline demo, CPU), "coursework" or '
            '"imagenet-rn50" (ImageNet-1K-16shot + CLIP RN50), or a config file'), "CONFIG": '"miniworld"'}
    return {"FIRST_NOTEBOOK": "False", "CONFIG_HELP": (
        '"last": the run notebook 01 started last (printed below); or a config name or the '
        'config.json of a run, to open that run'), "CONFIG": '"last"'}


def _to_notebook(py: Path):
    import jupytext

    nb = jupytext.read(py, fmt="py:percent")
    first = py.stem == list_notebooks()[0]
    header = jupytext.read(NOTEBOOK_DIR / "_header.py", fmt="py:percent").cells
    for cell in header:
        for token, value in sorted(_header_values(first).items(), key=lambda kv: -len(kv[0])):
            cell["source"] = cell["source"].replace(token, value)
    marks = [i for i, c in enumerate(nb.cells) if c["source"].strip() == HEADER_MARK]
    if len(marks) != 1:
        raise ValueError(f"{py}: expected one cell '{HEADER_MARK}', found {len(marks)}")
    nb.cells[marks[0]:marks[0] + 1] = header
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.pop("jupytext", None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # nbformat's default ids are random: keep the file stable
    return nb


def _stale() -> dict[Path, str]:
    """{.ipynb path: expected text} for every notebook whose .ipynb differs from its .py source."""
    import jupytext

    stale = {}
    for name in list_notebooks():
        target = NOTEBOOK_DIR / f"{name}.ipynb"
        text = jupytext.writes(_to_notebook(NOTEBOOK_DIR / f"{name}.py"), fmt="ipynb")
        if not target.exists() or target.read_text() != text:
            stale[target] = text
    return stale


def sync() -> list[Path]:
    """Write ``notebooks/NN.ipynb`` from ``notebooks/NN.py`` (no outputs); returns changed files."""
    stale = _stale()
    for target, text in stale.items():
        atomic_write_text(target, text)
    return list(stale)


def out_of_sync() -> list[str]:
    """Notebooks whose committed .ipynb differs from its .py source or holds outputs."""
    return [p.stem for p in _stale()]


STAMP_KEY = "fewshot_inputs"  # executed notebook metadata: digest of what produced its outputs


def _source_digest() -> str:
    """SHA-256 of the package's code and shipped configs (what a notebook's outputs depend on)."""
    h = hashlib.sha256()
    pkg = ROOT / "fewshot"
    for path in sorted([*pkg.rglob("*.py"), *pkg.rglob("*.json")]):
        h.update(str(path.relative_to(pkg)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _stamp(name: str, parameters: dict, code: str, before: str) -> str:
    """Digest of one notebook's inputs: its text, the parameters, the code (``code``:
    :func:`_source_digest`), the stamps before it."""
    text = (NOTEBOOK_DIR / f"{name}.ipynb").read_bytes()
    blob = json.dumps([name, parameters, code, before], sort_keys=True).encode()
    return hashlib.sha256(text + b"\0" + blob).hexdigest()


def _executed_stamp(path: Path) -> str | None:
    """The stamp of a completed execution at ``path`` (None if absent, cut off or failed)."""
    try:
        return json.loads(path.read_text()).get("metadata", {}).get(STAMP_KEY)
    except (OSError, ValueError):
        return None


def _resolve_returns(text: str) -> str:
    """``text`` as a terminal shows it: each line is what follows its last carriage return (a
    progress bar's final state; an erased bar is gone), blank lines of erased bars dropped."""
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    kept = [line for line in lines[:-1] if line.strip()] + [lines[-1].rsplit("\r", 1)[-1]]
    return "\n".join(kept) if kept[-1].strip() else "".join(f"{line}\n" for line in kept[:-1])


def tidy_streams(nb: dict) -> dict:
    """Each code cell's consecutive stream outputs of one name merged and carriage returns
    resolved (:func:`_resolve_returns`), so a saved notebook shows each text progress bar as a
    live one ends, not every update of it; streams left empty are removed."""
    for cell in nb.get("cells", []):
        outs = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                o = {**o, "text": "".join(o["text"]) if isinstance(o["text"], list) else o["text"]}
                if outs and outs[-1].get("output_type") == "stream" and outs[-1]["name"] == o["name"]:
                    outs[-1]["text"] += o["text"]
                    continue
            outs.append(o)
        for o in outs:
            if o.get("output_type") == "stream":
                o["text"] = _resolve_returns(o["text"])
        if "outputs" in cell:
            cell["outputs"] = [o for o in outs if o.get("output_type") != "stream" or o["text"].strip()]
    return nb


def _mark_done(path: Path, stamp: str) -> None:
    nb = tidy_streams(json.loads(path.read_text()))
    nb["metadata"][STAMP_KEY] = stamp
    atomic_write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def execute(names: list[str], out_dir: str | Path, parameters: dict, fresh: bool = False) -> dict[str, float]:
    """Execute notebooks in order into ``out_dir``; returns seconds per notebook executed.
    A notebook whose executed copy in ``out_dir`` was made from the same inputs is skipped
    (and so resumed after an interruption) unless ``fresh``; once one runs, all after it run."""
    import papermill

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    times, stamp, rerun, code = {}, "", fresh, _source_digest()  # the package hashed once
    for name in names:
        stamp = _stamp(name, parameters, code, stamp)
        target = out_dir / f"{name}.ipynb"
        if not rerun and _executed_stamp(target) == stamp:
            print(f"[notebooks] {name}: already executed with these inputs, skipped "
                  f"(--fresh runs it again)", flush=True)
            continue
        rerun, t0 = True, time.time()
        papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(target),
                                   parameters=parameters, kernel_name="python3",
                                   cwd=str(NOTEBOOK_DIR), progress_bar=False,
                                   extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no TCP notice
        _mark_done(target, stamp)
        times[name] = time.time() - t0
        print(f"[notebooks] {name}: {times[name]:.1f} s", flush=True)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fewshot.notebooks.runner", description=__doc__)
    p.add_argument("names", nargs="*", help="notebooks to run (default: all, in order)")
    p.add_argument("--out", default="notebooks/executed")
    p.add_argument("--config", default="miniworld")
    p.add_argument("--overrides", default="{}", help="JSON object of RunConfig overrides")
    p.add_argument("--sync", action="store_true", help="regenerate .ipynb from the .py sources")
    p.add_argument("--fresh", action="store_true",
                   help="execute every notebook again (by default, notebooks already executed "
                        "with the same inputs are skipped, so an interrupted run resumes)")
    args = p.parse_args(argv)
    if args.sync:
        print("\n".join(str(c) for c in sync()) or "notebooks already in sync")
        return 0
    from fewshot.run.config import load_config
    from fewshot.run.rundir import RunDir

    cfg = load_config(args.config, **json.loads(args.overrides))
    run_dir = RunDir(cfg.out)
    fresh = args.fresh or not run_dir.config_path.exists()  # no run folder: nothing to resume
    run_dir.start(cfg, fresh=True)  # a run folder of other settings is moved aside, kept
    execute(args.names or list_notebooks(), args.out,
            {"config": args.config, "overrides": json.loads(args.overrides)}, fresh=fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
