# %% [markdown]
# # 12 · Report
#
# The report is built from the run folder's files alone (results, diagnostics, predictions,
# config), so `python -m fewshot report --run <run folder>` writes the same thing without Jupyter:
# `report.md` with PNG and PDF figures, and `report.html`, one self-contained file to hand in. Its
# summary sentences are computed from the results, so they hold for this run, whatever data and
# model produced it.

# %%
# fewshot: shared header

# %%
from IPython.display import HTML

from fewshot.report import build_report

path = build_report(run.out, run.cfg.report_dir)
print(f"written: {path} and {path.with_suffix('.html')} (self-contained: figures embedded)")
HTML(path.with_suffix(".html").read_text())
