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

from fewshot import build_report

path = build_report(run.out, run.cfg.report_dir)
print(f"written: {path} and {path.with_suffix('.html')} (self-contained: figures embedded)")
HTML(path.with_suffix(".html").read_text())

# %% [markdown]
# ## Qualitative analysis
#
# The report's qualitative section, figure by figure, for the method set in `report_method`
# (notebook 01's `overrides`, e.g. `{"report_method": "tip-adapter-f"}`; empty: the best learnable
# method at 16 shots that was not tuned on test), at 1, 5 and 16 shots: the most confused class
# pairs, the per-class gain over zero-shot, the most confident mistakes, Tip-Adapter-F's cache keys
# before and after fine-tuning, and how its cache decides for a few test images. Each paragraph is
# computed from the numbers in its figure.

# %%
from fewshot.report.analysis_report import analysis_figures
from fewshot import load_run

analysis = analysis_figures(load_run(run.out))
display(Markdown(f"Method shown: **{analysis['method']}**, {analysis['why']}."))
for name, title, fig, text in analysis["figures"]:
    display(Markdown(f"### {title}\n\n{text}"), fig)
