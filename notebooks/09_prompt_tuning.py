# %% [markdown]
# # 09 · Prompt tuning (CoOp)
#
# CoOp (Zhou et al., IJCV 2022) keeps both encoders frozen and learns the *words* of the prompt:
# the context "a photo of a" becomes $M$ vectors $v_1 \dots v_M$ in the token-embedding space,
#
# $$t_c = g\big([\text{SOS}, v_1, \dots, v_M, \text{tokens}(\text{name}_c\,.), \text{EOS}]\big), \qquad
# \text{logits}(f) = s\, f\,\operatorname{normalise}(t)^\top$$
#
# trained with cross-entropy on the cached image features (SGD, CoOp's ImageNet recipe). The text
# encoder $g$ runs for every class at every step. `wise-coop` interpolates the context between
# its initial words and the learned vectors. `coop-16` is the paper's headline setting: $M = 16$
# vectors drawn from $\mathcal N(0, 0.02^2)$ instead of the words (fewer where the model's context
# is too short for 16 beside the class name, as the mini-world's 16-token CLIP); it has no WiSE-FT
# companion, since its starting point is no prompt at all.

# %%
# fewshot: shared header

# %% [markdown]
# ## The prompt's parts on the real model
# At initialisation the learned context *is* "a photo of a": the prompts encode exactly like the
# hand-written template.

# %%
import torch

from fewshot.methods.coop import encode_prompts, prompt_parts
from fewshot.models.text_head import build_text_classifier

names = run.dataset.classnames[:4]
parts = prompt_parts(run.backbone.model, names, device=run.device)
print("prefix (SOS)", tuple(parts.prefix.shape), "| context", tuple(parts.ctx.shape),
      "| suffix (name, '.', EOS, padding)", tuple(parts.suffix.shape), "| EOS at", parts.eot.tolist())
with torch.no_grad():
    t = encode_prompts(parts, parts.ctx)
ref = build_text_classifier(run.backbone.model, names, ["a photo of a {}."], run.device, progress=False)
print("cosine with the template's embedding:", [round(float(c), 4) for c in (t * ref).sum(1)])

# %% [markdown]
# ## The full run

# %%
from fewshot.report.narrative import method_sentence

records = run.step("prompt")
display(Markdown(run.summary("val")))
display(Markdown("**What you should see.** " + " ".join(method_sentence(run.records(), m) for m in ("coop", "wise-coop", "coop-16"))))

# %%
from fewshot.report.shift_figures import plot_wise_curve

plot_wise_curve(run.records(), "wise-coop")
