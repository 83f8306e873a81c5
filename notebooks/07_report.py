# %% [markdown]
# # 07 · Report
#
# The report is built from the results files alone (`results/*.jsonl`, `grids.json`, `predictions.json`), so `python -m fewshot report` produces the same thing without Jupyter. It writes Markdown with PNG and PDF figures to `report/`.

# %%
# fewshot: shared header

# %%
from fewshot.report import build_report

from IPython.display import Image

path = build_report(run.out, run.cfg.report_dir)
print(f"written: {path} (open it in any Markdown viewer; PDFs beside it for print)")
text = path.read_text()
display(Markdown("\n".join(line for line in text.splitlines() if not line.startswith("!["))))
for png in sorted(path.parent.glob("*.png")):
    display(Markdown(f"**{png.stem}**"), Image(str(png)))
