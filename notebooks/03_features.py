# %% [markdown]
# # 03 · Caching CLIP features once
#
# Every later step works on cached tensors: images are decoded and encoded once per backbone, preprocessing, image list and augmentation. We cache the centre-crop features of every test image, the centre crops of the training pool (all images of any manifest), and 10 augmented views per training image (Tip-Adapter's RandomResizedCrop + flip) for the cache keys and for Tip-Adapter-F. Files are fp16, keyed by everything that changes them, and written atomically.

# %%
# fewshot: shared header

# %%
import time

t0 = time.time()
shapes = run.features()
print(f"features ready in {time.time() - t0:.1f} s (a second run reads them from {run.cfg.cache_dir}/)")
display(Markdown("| set | features |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in shapes.items())
                 + f"\n| training pool, centre crops | {tuple(run.pool.center.shape)} |"
                 + f"\n| training pool, augmented views | {tuple(run.pool.views.shape)} |"
                 + f"\n| text head ({run.cfg.templates}) | {tuple(run.text_weights.shape)} |"))
