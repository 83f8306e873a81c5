"""Peers as their authors published them (issue 26): each check transcribes the official code's
formula or training loop as an independent loop (TaskRes, CLIP-Adapter, CLAP) and compares it with
the suite's method on the same tensors."""
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from fewshot import _clip_compat
from fewshot.methods import clap, clip_adapter, taskres
from fewshot.templates import get_templates


def _data(c=4, per_class=(3, 3, 2, 4), d=10, v=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([k for k, n in enumerate(per_class) for _ in range(n)])
    views = torch.randn(v, len(labels), d, generator=g) * 3  # raw features, as the cache holds
    shots = SimpleNamespace(views=views, labels=labels, shots=2, seed=seed, num_classes=c)
    raw = torch.randn(c, d, generator=g) * 4  # an unnormalised base, ‖t‖ ≈ 12
    return shots, raw


def _ctx(heads: dict, scale=20.0):
    """A context whose text_head serves ``heads`` {(templates, ensemble): [C, D]}."""
    some = next(iter(heads.values()))
    return SimpleNamespace(text_weights=F.normalize(some, dim=-1), logit_scale=scale, progress=False,
                           text_head=lambda t, e: heads[(t, e)])


def test_raw_ensemble_is_the_official_unnormalised_mean_and_tip7_single_is_taskres_base():
    """TaskRes's ``_get_base_text_features``: encode each of the 8 prompts, average, no norm."""
    from fewshot.backbones import build_clip
    from fewshot.zeroshot import build_text_classifier

    torch.manual_seed(0)
    model = build_clip(embed_dim=16, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                       context_length=16, transformer_width=64, transformer_layers=1).eval()
    names = ["tench", "great white shark"]
    official = ["itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                "a {} in a video game.", "art of the {}.", "a photo of the small {}.", "a photo of a {}."]
    assert sorted(get_templates("tip7+single")) == sorted(official)
    clip = _clip_compat.import_clip()
    with torch.no_grad():
        loop = []
        for name in names:
            emb = [model.encode_text(clip.tokenize([t.format(name)], context_length=16))[0] for t in official]
            loop.append(sum(emb) / len(emb))
        loop = torch.stack(loop)
    raw = build_text_classifier(model, names, "tip7+single", "cpu", progress=False, ensemble="raw")
    assert torch.allclose(raw, loop, atol=1e-5)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2))  # really unnormalised
    clip_head = build_text_classifier(model, names, "tip7+single", "cpu", progress=False)
    assert torch.allclose(clip_head.norm(dim=-1), torch.ones(2), atol=1e-5)  # the suite's ensemble unchanged


def _taskres_loop(shots, raw, epochs, wd, lr0=2e-4, b1=0.9, b2=0.999, eps=1e-8):
    """Dassl's Adam (coupled weight decay, bias-corrected moments) and schedule (one epoch at
    1e-5, then cosine per epoch) on TaskRes's logits, full batch, written out."""
    x = torch.zeros_like(raw, dtype=torch.float64)
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    views, labels = F.normalize(shots.views.double(), dim=-1), shots.labels
    for e in range(epochs):
        r = x.clone().requires_grad_(True)
        w = (raw.double() + 0.5 * r) / (raw.double() + 0.5 * r).norm(dim=-1, keepdim=True)
        F.cross_entropy(20.0 * views[e % len(views)] @ w.T, labels).backward()
        g = r.grad + wd * x
        lr = 1e-5 if e == 0 else lr0 * 0.5 * (1 + math.cos(math.pi * (e - 1) / (epochs - 1)))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1 ** (e + 1))) / ((v / (1 - b2 ** (e + 1))).sqrt() + eps)
    return x


def test_taskres_trains_on_the_raw_base_with_adam_weight_decay_as_a_written_out_loop(monkeypatch):
    """The whole fit (full batch: 12 images < 256) against the loop above; the decay is raised
    so that leaving it out, or decoupling it, would show."""
    shots, raw = _data()
    ctx = _ctx({("tip7+single", "raw"): raw})
    monkeypatch.setattr(taskres, "epochs_for", lambda k: 30)
    assert taskres.WEIGHT_DECAY == 5e-4 and taskres.fit(shots, ctx).hyperparameters["weight_decay"] == 5e-4
    monkeypatch.setattr(taskres, "LR", 0.05)
    monkeypatch.setattr(taskres, "WEIGHT_DECAY", 2.0)
    head = taskres.fit(shots, ctx)
    assert head.hyperparameters["head"] == "tip7+single (raw mean)" and torch.allclose(head.state["base"], raw)
    got = head.state["residual"].double()
    assert torch.allclose(got, _taskres_loop(shots, raw, 30, 2.0, lr0=0.05), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, _taskres_loop(shots, raw, 30, 0.0, lr0=0.05), atol=1e-3)


def test_clip_adapter_uses_the_published_single_prompt_head():
    shots, raw = _data()
    single = F.normalize(raw + 1.0, dim=-1)
    ctx = _ctx({("single", "clip"): single})
    ctx.text_weights = F.normalize(raw, dim=-1)  # the run's head differs from the published one
    head = clip_adapter.fit(shots, ctx)
    assert head.hyperparameters["head"] == "single"
    f = F.normalize(shots.views[0], dim=-1)
    w1, w2 = head.state["w1"], head.state["w2"]
    ref = torch.stack([20.0 * F.normalize(0.2 * F.relu(w2 @ F.relu(w1 @ fi)) + 0.8 * fi, dim=0) @ single.T
                       for fi in f])
    assert torch.allclose(head.logits(f), ref, atol=1e-5)


def test_clap_multipliers_and_penalty_equal_the_papers_sums():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(9, 3, generator=g) * 4, torch.tensor([0, 0, 1, 1, 1, 2, 0, 2, 2])
    lam = clap.class_multipliers(logits, labels, 3)
    for c in range(3):
        rows = [i for i in range(9) if labels[i] == c]
        p = [math.exp(logits[i, c]) / sum(math.exp(z) for z in logits[i].tolist()) for i in rows]
        assert abs(float(lam[c]) - sum(p) / len(p)) < 1e-6
    P, t = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    loop = sum(float(lam[c]) * sum((float(P[c, d]) - float(t[c, d])) ** 2 for d in range(5)) for c in range(3)) / 3
    assert abs(float(clap.clap_penalty(P, t, lam)) - loop) < 1e-5
    assert [clap.batches_per_epoch(n) for n in (12, 255, 256, 1000)] == [1, 1, 1, 3]


def test_clap_fit_equals_the_official_loop_written_out(monkeypatch):
    """``run_epoch`` of jusiro/CLAP with the pool smaller than one batch (every epoch is one step
    on the whole pool): CE + (1/C)Σλ_c‖P_c − t_c‖², SGD momentum 0.9 by hand, Dassl's schedule
    (40 of the 300 epochs, to keep the test fast)."""
    assert clap.EPOCHS == 300 and clap.LR == 0.1
    monkeypatch.setattr(clap, "EPOCHS", 40)
    shots, raw = _data()
    head = clap.fit(shots, _ctx({("tip7+single", "raw"): raw}))
    assert head.tuned_on == "none" and head.hyperparameters["head"] == "tip7+single (raw mean)"
    pool = F.normalize(shots.views.double(), dim=-1).reshape(-1, 10)
    labels = shots.labels.repeat(4)
    zs = 20.0 * pool @ F.normalize(raw.double(), dim=-1).T
    lam = torch.stack([zs.softmax(-1)[labels == c, c].mean() for c in range(4)])
    assert torch.allclose(head.state["multipliers"].double(), lam, atol=1e-6)
    P, buf, t = raw.double().clone(), None, raw.double()
    for e in range(40):
        q = P.clone().requires_grad_(True)
        loss = F.cross_entropy(20.0 * pool @ (q / q.norm(dim=-1, keepdim=True)).T, labels)
        (loss + (lam * ((q - t) ** 2).sum(-1)).mean()).backward()
        buf = q.grad if buf is None else 0.9 * buf + q.grad
        lr = 1e-5 if e == 0 else 0.1 * 0.5 * (1 + math.cos(math.pi * (e - 1) / 39))
        P = P - lr * buf
    assert torch.allclose(head.state["prototypes"].double(), P, atol=1e-4)
    assert not torch.allclose(P, raw.double(), atol=1e-3)  # it did move


def test_recipe_is_a_validated_config_field():
    from fewshot.config import RunConfig
    from fewshot.errors import ConfigError

    assert RunConfig().recipe == "default" and RunConfig(recipe="official").recipe == "official"
    with pytest.raises(ConfigError, match="recipe"):
        RunConfig(recipe="authors")


def _lp_loop_fp16(shots, text, epochs):
    """methods/linear_probe_p2.py of the official LP++, everything fp16: centroid init, nn.Linear's
    bias init (the suite's generator draw), SGD momentum 0.9 by hand, α every 10 epochs."""
    from fewshot.methods import lp_plus_plus as lp

    x = F.normalize(shots.views[0].float(), dim=-1).half()
    y, C, W = shots.labels, shots.num_classes, text.half()
    wv = torch.zeros(C, x.shape[1], dtype=torch.float16).index_add_(0, y, x)
    gen = torch.Generator().manual_seed(shots.seed)
    b = ((torch.rand(C, generator=gen) * 2 - 1) / math.sqrt(x.shape[1])).half()
    alpha = torch.full((C,), lp.init_alpha(x, y, W, C), dtype=torch.float16)
    lr_w, lr_a = lp.step_sizes(x.float(), W.float())
    bw, bb, ga = None, None, torch.zeros_like(alpha)
    for e in range(epochs):
        p = [t.clone().requires_grad_(True) for t in (wv, b, alpha)]
        F.cross_entropy(x @ p[0].T + p[1] + p[2] * (x @ W.T), y).backward()
        bw = p[0].grad if bw is None else 0.9 * bw + p[0].grad
        bb = p[1].grad if bb is None else 0.9 * bb + p[1].grad
        wv, b, ga = wv - lr_w * bw, b - lr_w * bb, ga + p[2].grad
        if (e + 1) % 10 == 0:
            alpha = alpha - lr_a * ga
    return wv, b, alpha


def test_lp_plus_plus_official_recipe_trains_in_fp16_as_the_official_loop(monkeypatch):
    from fewshot.methods import lp_plus_plus as lp

    monkeypatch.setattr(lp, "EPOCHS", 30)
    shots, raw = _data()
    text = F.normalize(raw, dim=-1)
    ctx = SimpleNamespace(text_weights=text, logit_scale=20.0, progress=False, cfg=SimpleNamespace(recipe="official"))
    head = lp.fit(shots, ctx)
    assert head.hyperparameters["recipe"] == "official" and head.hyperparameters["dtype"] == "float16"
    assert head.state["wv"].dtype == torch.float16
    wv, b, alpha = _lp_loop_fp16(shots, text, 30)
    assert torch.allclose(head.state["wv"].float(), wv.float(), atol=2e-2)
    assert torch.allclose(head.state["alpha"].float(), alpha.float(), atol=2e-2)
    default = lp.fit(shots, SimpleNamespace(text_weights=text, logit_scale=20.0, progress=False))
    assert default.hyperparameters["recipe"] == "default" and default.state["wv"].dtype == torch.float32


def test_ape_t_official_recipe_keeps_its_parameters_at_fp16_precision():
    from fewshot.config import RunConfig
    from fewshot.methods import ape
    from fewshot.optim import to_fp16_precision

    g = torch.Generator().manual_seed(3)
    labels = torch.arange(4).repeat_interleave(3)
    shots = SimpleNamespace(views=torch.randn(2, 12, 16, generator=g), labels=labels, shots=3, seed=1, num_classes=4,
                            center=F.normalize(torch.randn(12, 16, generator=g), dim=-1))
    text = F.normalize(torch.randn(4, 16, generator=g), dim=-1)
    heads = {}
    for recipe in ("default", "official"):
        ctx = SimpleNamespace(text_weights=text, logit_scale=100.0, progress=False, oracle=None,
                              cfg=RunConfig(recipe=recipe))
        heads[recipe] = ape.fit_ape_t(shots, ctx)
        assert heads[recipe].hyperparameters["recipe"] == recipe
    off, dflt = heads["official"].state["res"], heads["default"].state["res"]
    assert torch.equal(to_fp16_precision(off), off) and off.abs().max() > 0
    assert not torch.equal(to_fp16_precision(dflt), dflt)


def test_coop_16_has_sixteen_random_context_tokens_where_the_context_allows():
    from fewshot.backbones import build_clip
    from fewshot.methods import coop

    torch.manual_seed(0)
    long = build_clip(embed_dim=16, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                      context_length=77, transformer_width=64, transformer_layers=1)
    names = ["tench", "great white shark"]
    assert coop.random_init(long, names) == " ".join(["X"] * 16)
    parts = coop.prompt_parts(long, names, coop.random_init(long, names), truncate=False)
    assert parts.ctx.shape[0] == 16
    clip = _clip_compat.import_clip()
    tok = clip.tokenize([f"{n}." for n in names])  # the suffix starts with the class name's tokens
    assert torch.equal(parts.suffix[1, 0], long.token_embedding.weight[tok[1, 1]].detach().float())
    short = build_clip(embed_dim=16, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                       context_length=16, transformer_width=64, transformer_layers=1)
    n = len(coop.random_init(short, names).split())
    assert n == 16 - 2 - (len(tok[1].nonzero()) - 2)  # SOS, "great white shark." and EOS fit beside it
    from fewshot.protocol import get_method
    assert get_method("coop-16").companions == () and get_method("coop").companions == ("wise-coop",)


def test_leaderboard_and_sources_table_read_each_methods_registration():
    from fewshot.protocol import list_methods
    from fewshot.report import leaderboard, sources_table
    from fewshot.report_tables import source_of
    from fewshot.results import make_record

    assert "geekyutao/TaskRes" in source_of("taskres") and source_of("taskres").endswith("@5195359")
    assert source_of("wise-coop") == source_of("coop") != "" and source_of("class-means") == ""
    assert "jusiro/CLAP" in source_of("clap") and "Silva-Rodríguez" in source_of("clap")
    table = sources_table().splitlines()
    assert len(table) == 2 + len(list_methods())
    assert any(r.startswith("| lp++ |") and r.rstrip().split("|")[3].strip() == "default, official" for r in table)
    ctx = {"backbone": "b", "backbone_sha256": "0" * 64, "dataset": "d", "git_rev": "x", "device": "cpu"}
    recs = [make_record(m, "val", {"top1": 50.0 + s}, context=ctx, shots=1, seed=s,
                        hyperparameters={"recipe": rec}, tuned_on="none")
            for m, rec in (("lp++", "official"), ("taskres", "default")) for s in (1, 2)]
    rows = {r.split("|")[1].strip(): r for r in leaderboard(recs).splitlines() if r.startswith("| ")}
    assert rows["lp++"].split("|")[-3].strip() == "official" and "FewShot-CLIP-Strong-Baseline" in rows["lp++"]
    assert rows["taskres"].split("|")[-3].strip() == "default"


def _tiny_encoder(n=6, seed=0):
    import numpy as np

    from fewshot.backbones import build_clip
    from fewshot.pixels import PixelSet, train_size

    torch.manual_seed(seed)
    model = build_clip(embed_dim=16, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                       context_length=16, transformer_width=64, transformer_layers=1).eval()
    size = train_size(32)
    array = np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    paths = [f"c{i % 3}/img{i}.JPEG" for i in range(n)]
    return SimpleNamespace(model=model, pool=lambda: (PixelSet(array, paths), {p: i for i, p in enumerate(paths)})), paths


def test_fresh_views_are_new_0_08_to_1_crops_each_epoch_through_the_frozen_encoder():
    from fewshot.crops import FreshViews
    from fewshot.pixels import augment
    from fewshot.preprocess import normalize_pixels

    encoder, paths = _tiny_encoder()
    order = paths[::-1]  # the shots' order, not the pool's
    views = FreshViews(encoder, order, epochs=3, seed=4, device="cpu")
    assert views.shape == (3, 6, 16)
    pixels, rows = encoder.pool()
    gen = torch.Generator().manual_seed(4 * 1_000_003 + 1)
    x = augment(pixels.batch([rows[p] for p in order]), 32, gen, scale=(0.08, 1.0))
    with torch.no_grad():
        ref = F.normalize(encoder.model.encode_image(normalize_pixels(x)), dim=-1)
    assert torch.allclose(views[1], ref, atol=1e-6) and torch.equal(views[1], views[1])
    x0 = augment(pixels.batch([rows[p] for p in order]), 32, torch.Generator().manual_seed(4 * 1_000_003), scale=(0.08, 1.0))
    assert (x0 - x).abs().mean() > 10  # a new crop every epoch (the random tiny tower barely tells them apart)
    assert not torch.allclose(views[0], views[1], atol=1e-6)
    mask = torch.tensor([True, False, True, True, False, False])
    assert torch.allclose(views.subset(mask)[2], views[2][mask], atol=1e-6)


def test_taskres_official_recipe_trains_on_fresh_crops(monkeypatch):
    """The official recipe's fit equals the default fit on the same fresh views stacked as a cache."""
    from fewshot.crops import FreshViews

    encoder, paths = _tiny_encoder()
    monkeypatch.setattr(taskres, "epochs_for", lambda k: 3)
    labels = torch.tensor([int(p[1]) for p in paths])
    raw = torch.randn(3, 16, generator=torch.Generator().manual_seed(5)) * 4
    shots = SimpleNamespace(views=torch.zeros(1, 6, 16), labels=labels, shots=2, seed=2, num_classes=3, paths=tuple(paths))
    ctx = _ctx({("tip7+single", "raw"): raw})
    ctx.cfg, ctx.encoder = SimpleNamespace(recipe="official"), encoder
    head = taskres.fit(shots, ctx)
    assert head.hyperparameters["recipe"] == "official"
    fresh = FreshViews(encoder, paths, 3, 2, "cpu")
    cached = SimpleNamespace(**{**vars(shots), "views": torch.stack([fresh[e] for e in range(3)])})
    ctx.cfg = SimpleNamespace(recipe="default")
    again = taskres.fit(cached, ctx)
    assert again.hyperparameters["recipe"] == "default"
    assert torch.allclose(head.state["residual"], again.state["residual"], atol=1e-7)
    assert head.state["residual"].abs().max() > 0


def test_fresh_crop_methods_get_the_encoder_only_under_the_official_recipe():
    from fewshot.config import RunConfig
    from fewshot.protocol import get_method

    for name in ("taskres", "clip-adapter"):
        m = get_method(name)
        assert "official" in m.recipes and not m.needs_encoder
        assert m.encoder_for(RunConfig(recipe="official")) and not m.encoder_for(RunConfig())
    assert {"official"} <= set(get_method("coop").recipes) and get_method("coop").needs_encoder


CUPL_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cupl_imagenet_small.json"


def test_cupl_reader_gives_tip7_then_each_classes_prompts_and_one_line_errors(monkeypatch, tmp_path):
    import json

    from fewshot.errors import DatasetError
    from fewshot.templates import class_prompts, list_templates

    assert "cupl+tip7" in list_templates()
    monkeypatch.setenv("FEWSHOT_CUPL", str(CUPL_FIXTURE))
    published = json.loads(CUPL_FIXTURE.read_text())
    got = class_prompts("cupl+tip7", ["great white shark", "tench"])
    tip7 = get_templates("tip7")
    assert got[1] == [t.format("tench") for t in tip7] + published["tench"]  # APE's order: templates, then CuPL
    assert len(got[0]) == 7 + 2
    with pytest.raises(DatasetError, match="no CuPL prompts for 1 of 2 classes, e.g. 'goldfish'"):
        class_prompts("cupl+tip7", ["tench", "goldfish"])
    monkeypatch.setenv("FEWSHOT_CUPL", str(tmp_path / "absent.json"))
    with pytest.raises(DatasetError, match=r"run ./download_data.sh cupl") as err:
        class_prompts("cupl+tip7", ["tench"])
    assert "\n" not in str(err.value)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tench": "not a list"}))
    monkeypatch.setenv("FEWSHOT_CUPL", str(bad))
    with pytest.raises(DatasetError, match="bad entry 'tench'"):
        class_prompts("cupl+tip7", ["tench"])


def test_cupl_head_equals_apes_extract_text_feature_loop(monkeypatch):
    from fewshot.backbones import build_clip
    from fewshot.zeroshot import build_text_classifier

    monkeypatch.setenv("FEWSHOT_CUPL", str(CUPL_FIXTURE))
    torch.manual_seed(0)
    model = build_clip(embed_dim=16, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                       context_length=16, transformer_width=64, transformer_layers=1).eval()
    import json
    published, names = json.loads(CUPL_FIXTURE.read_text()), ["tench", "great white shark"]
    clip = _clip_compat.import_clip()
    loop = []
    with torch.no_grad():
        for name in names:  # extract_text_feature: templates + CuPL, normalise each, mean, normalise
            texts = [t.format(name) for t in get_templates("tip7")] + published[name]
            e = model.encode_text(clip.tokenize(texts, context_length=16, truncate=True))
            e = e / e.norm(dim=-1, keepdim=True)
            loop.append(e.mean(0) / e.mean(0).norm())
    got = build_text_classifier(model, names, "cupl+tip7", "cpu", progress=False)
    assert torch.allclose(got, torch.stack(loop), atol=1e-6)


def test_download_cupl_checks_the_layout_and_writes_its_sha256(tmp_path):
    import hashlib
    import subprocess

    script = Path(__file__).resolve().parent.parent / "download_data.sh"

    def run(*args):
        return subprocess.run(["bash", str(script), "cupl", *args], cwd=tmp_path, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)})

    res = run(str(CUPL_FIXTURE))  # not the published file: its git blob differs
    assert res.returncode != 0 and res.stderr.startswith("error: ") and "git blob SHA-1" in res.stderr
    assert res.stderr.count("\n") == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"tench": 3}')
    res = run(str(bad), "--sha256", hashlib.sha256(bad.read_bytes()).hexdigest())
    assert res.returncode != 0 and "not an object of class name" in res.stderr and res.stderr.count("\n") == 1
    sha = hashlib.sha256(CUPL_FIXTURE.read_bytes()).hexdigest()
    res = run(str(CUPL_FIXTURE), "--sha256", sha)
    assert res.returncode == 0, res.stderr
    dest = tmp_path / "data" / "cupl" / "CuPL_image_prompts.json"
    assert dest.read_bytes() == CUPL_FIXTURE.read_bytes() and (tmp_path / "data" / "cupl" / "CuPL_image_prompts.json.sha256").read_text().strip() == sha
    assert "nothing to do" in run().stdout


def test_readme_lists_every_method_with_its_source_as_the_registry_declares():
    from fewshot.report import sources_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert sources_table() in readme, "README's sources table is stale: paste fewshot.report.sources_table()"


@pytest.mark.slow
def test_official_recipe_runs_through_the_pipeline_on_fresh_crops(small_world, tiny_clip_path, tmp_path, monkeypatch):
    """recipe=official end to end: the run hands the encoder to CLIP-Adapter (Method.encoder_for),
    which trains on fresh crops of the pool's pixel cache (3 of its 50 epochs here); the records say
    which recipe and head."""
    import json

    from fewshot import cli

    monkeypatch.setattr(clip_adapter, "EPOCHS", 3)

    args = ["run", "--config", "miniworld-quick", "--set", f"data={small_world}", f"backbone={tiny_clip_path}",
            f"out={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", "merge_tasks=", "shots=[1]", "seeds=[1]", "views=1",
            "methods=[zero-shot,clip-adapter]", "recipe=official", "--steps", "zeroshot", "splits", "features", "peers"]
    assert cli.main(args) == 0
    recs = [json.loads(line) for line in (tmp_path / "run" / "results" / "clip-adapter.jsonl").read_text().splitlines()]
    assert recs and all(r["hyperparameters"]["recipe"] == "official" and r["hyperparameters"]["head"] == "single"
                        for r in recs)
    assert list((tmp_path / "cache").rglob("*.npy"))  # the pixel cache the crops were drawn from
