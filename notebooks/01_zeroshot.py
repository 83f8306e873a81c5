# %% [markdown]
# # 01 · Zero-shot CLIP baseline
#
# CLIP classifies by comparing an image embedding with the embeddings of prompts such as *a photo of a tench.* Here we build that text head from the configured templates (`single`, `tip7` or CLIP's 80-template ensemble `clip80`) and measure top-1/top-5 on the val set and every shifted test set that is present. No training image is used.

# %%
# fewshot: shared header

# %%
from fewshot.results import records_table

records = run.zeroshot()
display(Markdown(records_table(records)))

# %% [markdown]
# Accuracy varies a lot between classes: names the model rarely saw during pretraining get
# little help from the text head. These are the classes the few shots should rescue.

# %%
from fewshot.figures import plot_class_accuracy

plot_class_accuracy(run.class_accuracy(), run.dataset.classnames)
