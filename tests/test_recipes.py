"""The suite's recipes and where its methods come from (issue 26): fresh crops for the official
recipes, CuPL's prompts (reader, head, download), and the sources the leaderboard and README
read from each method's registration. Each check compares with an independent computation: APE's
text-feature loop, the crops drawn by hand, the published file layout."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from fewshot import _clip_compat
from fewshot.methods import taskres
from fewshot.models.templates import get_templates


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



def test_leaderboard_and_sources_table_read_each_methods_registration():
    from fewshot.methods import list_methods
    from fewshot.report.build import leaderboard, sources_table
    from fewshot.report.tables import source_of
    from fewshot.protocol.results import make_record

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

    from fewshot.models.backbones import build_clip
    from fewshot.features.pixels import PixelSet, train_size

    torch.manual_seed(seed)
    model = build_clip(embed_dim=16, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                       context_length=16, transformer_width=64, transformer_layers=1).eval()
    size = train_size(32)
    array = np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    paths = [f"c{i % 3}/img{i}.JPEG" for i in range(n)]
    return SimpleNamespace(model=model, pool=lambda: (PixelSet(array, paths), {p: i for i, p in enumerate(paths)})), paths


def test_fresh_views_are_new_0_08_to_1_crops_each_epoch_through_the_frozen_encoder():
    from fewshot.features.crops import FreshViews
    from fewshot.features.pixels import augment
    from fewshot.features.preprocess import normalize_pixels

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
    from fewshot.features.crops import FreshViews

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
    from fewshot.run.config import RunConfig
    from fewshot.methods import get_method

    for name in ("taskres", "clip-adapter"):
        m = get_method(name)
        assert "official" in m.recipes and not m.needs_encoder
        assert m.encoder_for(RunConfig(recipe="official")) and not m.encoder_for(RunConfig())
    assert {"official"} <= set(get_method("coop").recipes) and get_method("coop").needs_encoder


CUPL_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cupl_imagenet_small.json"


def test_cupl_reader_gives_tip7_then_each_classes_prompts_and_one_line_errors(monkeypatch, tmp_path):
    import json

    from fewshot.base.errors import DatasetError
    from fewshot.models.templates import class_prompts, list_templates

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
    from fewshot.models.backbones import build_clip
    from fewshot.models.text_head import build_text_classifier

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
    from fewshot.report.build import sources_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert sources_table() in readme, "README's sources table is stale: paste fewshot.report.build.sources_table()"


@pytest.mark.slow
def test_official_recipe_runs_through_the_pipeline_on_fresh_crops(small_world, tiny_clip_path, tmp_path, monkeypatch):
    """recipe=official end to end: the run hands the encoder to CLIP-Adapter (Method.encoder_for),
    which trains on fresh crops of the pool's pixel cache (3 of its 50 epochs here); the records say
    which recipe and head."""
    import json

    from fewshot import cli

    args = ["run", "--config", "miniworld-quick", "--set", f"data={small_world}", f"backbone={tiny_clip_path}",
            f"out={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", "merge_tasks=", "shots=[1]", "seeds=[1]", "views=1",
            "clip_adapter_epochs=3",
            "methods=[zero-shot,clip-adapter]", "recipe=official", "--steps", "zeroshot", "splits", "features", "peers"]
    assert cli.main(args) == 0
    recs = [json.loads(line) for line in (tmp_path / "run" / "results" / "clip-adapter.jsonl").read_text().splitlines()]
    assert recs and all(r["hyperparameters"]["recipe"] == "official" and r["hyperparameters"]["head"] == "single"
                        for r in recs)
    assert list((tmp_path / "cache").rglob("*.npy"))  # the pixel cache the crops were drawn from


def test_an_official_run_whose_prompts_are_missing_stops_before_work(small_world, tiny_clip_path, tmp_path,
                                                                     capsys, monkeypatch):
    """APE's official head needs CuPL's prompts for every class: a missing file, or one without the
    run's classes, is one error line naming the methods and the fix, before anything is written;
    a file covering every class passes the same preflight."""
    import json

    from fewshot import cli
    from fewshot.run.config import RunConfig
    from fewshot.data.datasets import load_dataset
    from fewshot.run.preflight import check_run

    monkeypatch.setenv("FEWSHOT_CUPL", str(tmp_path / "none.json"))
    args = ["run", "--config", "miniworld-quick", "--set", f"data={small_world}", f"backbone={tiny_clip_path}",
            f"out={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", "merge_tasks=", "shots=[1]", "seeds=[1]",
            "recipe=official",
            "--steps", "zeroshot"]
    assert cli.main(args) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "recipe=official: ape, ape-t read templates cupl+tip7" in err[0]
    assert "download_data.sh cupl" in err[0] and "leave ape, ape-t out of `methods`" in err[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    assert cli.main(args[:-3] + ["methods=[zero-shot,gda]", "--steps", "zeroshot"]) == 0  # no per-class head needed
    dataset = load_dataset(small_world)
    (tmp_path / "cupl.json").write_text(json.dumps({c: [f"a {c}."] for c in dataset.classnames}))
    monkeypatch.setenv("FEWSHOT_CUPL", str(tmp_path / "cupl.json"))
    check_run(RunConfig(data=str(small_world), out=str(tmp_path / "r2"), cache_dir=str(tmp_path / "c2"),
                        recipe="official"), dataset)
