# %% [markdown]
# # 01 · Zero-shot CLIP
#
# > **Coursework** (the README's "Coursework path" has the details and the Colab and ModelArts steps).
# > 1. **Settings: here, once.** In the parameters cell below set `config = "imagenet-rn50"` (the
# >    honest protocol: nothing tuned on test) and `overrides`, e.g. `{"data": ..., "shots": [1, 5, 16],
# >    "out": ..., "cache_dir": ..., "report_dir": ...}` (on Colab: `out`, `cache_dir`, `report_dir`
# >    on Drive). Later notebooks keep `config = "last"`: they continue this run and print which.
# >    To change a setting, change it here and rerun this notebook with a new `out`.
# > 2. **Run in order** 01 → 05, 07, then 12 (zero-shot, splits, features, Tip-Adapter,
# >    Tip-Adapter-F, linear probes, the report): the four requirements. 06 and 10 are cheap extras;
# >    08 and 09 take hours on a T4 and are optional; 11 needs task datasets (`merge_tasks`).
# > 3. **A learnable model**: `tip-adapter-f` (05) and `linear-probe-zs` (07) learn from the shots;
# >    `tip-adapter` (04) is training-free (lazy), the contrast.
# > 4. **Hand in the honest table** (1, 5, 16 shots) from this run's report. Beside it, the same
# >    settings with `"oracle": True` (another `out`; `python -m fewshot report --run RUN
# >    --oracle-run ORACLE_RUN`) shows what tuning on test adds: explain that gap, never hand in the
# >    oracle table alone. `config = "coursework"` (oracle, one template, seed 31) checks your numbers
# >    against the course notebook's.
#
# CLIP scores an image against *prompts*. For class $c$ and templates $t_1 \dots t_T$ ("a photo of
# a {}.", ...), the text encoder $g$ gives one embedding per prompt; normalised and averaged, they
# form the class's row of the **zero-shot head** $W \in \mathbb{R}^{C \times D}$:
#
# $$W_c = \operatorname{normalise}\Big(\tfrac{1}{T}\textstyle\sum_{j} \operatorname{normalise}\big(g(t_j(\text{name}_c))\big)\Big), \qquad
# \text{logits}(f) = s \cdot f\,W^\top \in \mathbb{R}^{C}$$
#
# where $f \in \mathbb{R}^{D}$ is the normalised image embedding and $s$ CLIP's logit scale (100
# for OpenAI's checkpoints). No training image is used. This notebook starts the run: it fixes
# the run's settings (`config.json`) for every later notebook.

# %%
# fewshot: shared header

# %% [markdown]
# ## The formula on real tensors
# Three classes, three templates: the prompts, their embeddings, the head's rows.

# %%
import torch

from fewshot.models.templates import get_templates
from fewshot.models.text_head import build_text_classifier, zeroshot_logits

names = run.dataset.classnames[:3]
templates = get_templates(run.cfg.templates)[:3]
print("prompts of the first class:", [t.format(names[0]) for t in templates])
W3 = build_text_classifier(run.backbone.model, names, templates, run.device, progress=False)
print("head rows W:", tuple(W3.shape), "norms:", W3.norm(dim=1).tolist())

val = run.eval_sets["val"]
f = val.feats[:5]  # five normalised val image embeddings [5, D]
logits = zeroshot_logits(f, run.text_weights, run.logit_scale)  # [5, C] with the full head
top = logits.softmax(1).topk(3, dim=1)
for i in range(5):
    guesses = ", ".join(f"{run.dataset.classnames[c]} {p:.2f}" for p, c in zip(top.values[i].tolist(), top.indices[i].tolist()))
    print(f"image {i} ({run.dataset.classnames[val.labels[i]]}): {guesses}")

# %% [markdown]
# ## The full run: every test set

# %%
from fewshot.protocol.results import records_table

records = run.zeroshot()
display(Markdown(records_table(records)))

# %% [markdown]
# Accuracy varies a lot between classes: names the model rarely saw during pretraining get
# little help from the text head. These are the classes the few shots should rescue.

# %%
from fewshot.report.figures import plot_class_accuracy

acc = run.class_accuracy()
weakest = sorted(range(len(acc)), key=acc.__getitem__)[:5]
display(Markdown("**What you should see.** " + f"Zero-shot top-1 on val is {records[0]['metrics']['top1']:.2f} %. "
                 "The weakest classes: " + ", ".join(f"{run.dataset.classnames[c]} ({acc[c]:.0f} %)" for c in weakest) + "."))
plot_class_accuracy(acc, run.dataset.classnames)
