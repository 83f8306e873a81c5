"""The qualitative analysis end to end on a small synthetic run (``Run.from_tensors``): what the
run keeps, which method is shown, and that every figure draws the numbers computed for it."""
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fewshot.protocol.analysis import confused_pairs
from fewshot.report.analysis_data import choose_method, load_analysis
from fewshot.report.analysis_figures import FONT
from fewshot.report.analysis_report import analysis_figures, analysis_section
from fewshot.run.config import RunConfig
from fewshot.data.datasets import Dataset, ImageSet
from fewshot.base.errors import ConfigError
from fewshot.report.figstyle import readable, texts_outside
from fewshot.run.pipeline import Run, TrainPool
from fewshot.protocol.method import EvalSet
from fewshot.report.build import load_run

C, D, TRAIN, VAL = 6, 16, 16, 12
METHODS = ("zero-shot", "tip-adapter", "tip-adapter-f", "lp++")


def _run(root, **kw):
    g = torch.Generator().manual_seed(0)
    protos = F.normalize(torch.randn(C, D, generator=g), dim=1)
    protos[1] = F.normalize(protos[0] + 0.3 * protos[1], dim=0)  # classes 0 and 1 look alike
    text = F.normalize(protos + 0.5 * torch.randn(C, D, generator=g), dim=1)
    wnids = [f"n{i:08d}" for i in range(C)]
    train = [(f"train/{w}/{j}.png", i) for i, w in enumerate(wnids) for j in range(TRAIN)]
    val = [(f"val/{i}_{j}.png", i) for i in range(C) for j in range(VAL)]
    for p, y in train + val:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (40 * y, 255 - 40 * y, 90)).save(root / p)
    tl = torch.tensor([y for _, y in train])
    center = protos[tl] + 0.6 * torch.randn(len(train), D, generator=g)
    pool = TrainPool({p: i for i, (p, _) in enumerate(train)}, center.half(),
                     (center[None] + 0.2 * torch.randn(2, len(train), D, generator=g)).half(), tl)
    vl = torch.tensor([y for _, y in val])
    sets = {"val": EvalSet("val", F.normalize(protos[vl] + 0.6 * torch.randn(len(val), D, generator=g), dim=1),
                           vl, tuple(range(C)), tuple(p for p, _ in val))}
    cfg = RunConfig(data=str(root), out=str(root / "run"), shots=(1, 2, 5, 16), seeds=(1, 2), views=2,
                    beta_steps=4, alpha_steps=3, epochs=3, cv_folds=2, device="cpu", progress=False,
                    methods=METHODS, tip_f_recipe="fp32", **kw)
    ds = Dataset(root, wnids, [f"class {i}" for i in range(C)],
                 ImageSet("train", root, train, list(range(C))), ImageSet("val", root, val, list(range(C))))
    run = Run.from_tensors(cfg, ds, text, 100.0, sets, pool)
    run.splits()
    for step in ("zeroshot", "tip_adapter", "tip_adapter_f", "peers"):
        run.step(step)
    return run


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("qual"))


def test_the_run_keeps_top3_at_1_5_16_shots_of_the_first_seed(done):
    folder = done.out / "analysis"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.pt"))
    expected = ["zero-shot/shot-free.pt"] + [f"{m}/shots{k}_seed1.pt" for m in ("lp++", "tip-adapter-f")
                                             for k in (1, 16, 5)]
    assert sorted(files) == sorted(expected)  # no 2-shot, no seed 2, no training-free Tip-Adapter
    raw = torch.load(folder / "tip-adapter-f/shots5_seed1.pt", weights_only=True)
    assert raw["top3_classes"].dtype == torch.int16 and raw["top3_probs"].dtype == torch.float16
    # top-3 against the formula on the fitted keys, written out
    fitted = done.dir.load_fitted("tip-adapter-f", 5, 1, done.digest, "tip_adapter_f")
    a, b = fitted.hyperparameters["alpha"], fitted.hyperparameters["beta"]
    keys, feats = fitted.state["keys"], done.eval_sets["val"].feats
    labels = done.shots_data(5, 1).labels
    for i in range(0, len(feats), 7):
        logits = [100 * float(feats[i] @ done.text_weights[c]) + a * sum(
            math.exp(-b * (1 - float(feats[i] @ keys[m]))) for m in range(len(keys)) if labels[m] == c)
            for c in range(C)]
        e = np.exp(np.array(logits) - max(logits))
        order = list(np.argsort(-e, kind="stable")[:3])
        assert raw["top3_classes"][i].tolist() == order
        assert np.allclose(raw["top3_probs"][i].float(), (e / e.sum())[order], atol=2e-3)


def test_the_shown_method_is_the_best_learnable_one_at_16_shots(done):
    recs, data = done.records(), load_analysis(done.out)
    means = {}
    for m in ("tip-adapter-f", "lp++", "tip-adapter"):
        vals = [r["metrics"]["top1"] for r in recs if r["method"] == m and r["shots"] == 16
                and r["role"] == "final" and r["eval_set"] == "val"]
        means[m] = sum(vals) / len(vals)
    name, why = choose_method(recs, data)
    assert name == max(("tip-adapter-f", "lp++"), key=means.get)  # tip-adapter: not learnable
    assert f"{means[name]:.2f} %" in why
    assert choose_method(recs, data, "lp++")[0] == "lp++"
    with pytest.raises(Exception, match="--steps tip_adapter .*report_method=tip-adapter"):
        choose_method(recs, data, "tip-adapter")


def test_report_method_is_checked_and_a_chosen_training_free_method_is_kept(tmp_path):
    with pytest.raises(ConfigError, match="report_method"):
        RunConfig(report_method="no-such-method")
    run = _run(tmp_path, report_method="tip-adapter")
    assert (run.out / "analysis/tip-adapter/shots16_seed1.pt").exists()
    assert analysis_figures(load_run(run.out))["method"] == "tip-adapter"


def _texts(fig):
    return [t for ax in fig.axes for t in [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts,
                                           *ax.get_yticklabels()] if t.get_text()]


def test_every_figure_draws_its_numbers_readably(done, tmp_path):
    run = load_run(done.out)
    got = analysis_figures(run)
    figs = {name: (fig, text) for name, _, fig, text in got["figures"]}
    assert set(figs) == {"analysis_confusions", "analysis_class_gain", "analysis_failures",
                         "analysis_features", "analysis_cache"}
    for name, (fig, text) in figs.items():
        visible = [ax for ax in fig.axes if ax.axison]
        assert visible and all(ax.images or ax.lines or ax.patches or ax.collections for ax in visible), name
        assert min(t.get_fontsize() for t in _texts(fig)) >= FONT, name
        assert not texts_outside(readable(fig)), name  # at the report's sizes, nothing is cut off
        assert len(text) > 80 and any(ch.isdigit() for ch in text), name
    data, method = got["data"], got["method"]
    labels = np.array(data["labels"])
    # confusions: the titles carry the brute-force counts of the top pair at 16 shots
    pred = data["top3"][method][16][0][:, 0].numpy()
    top = confused_pairs(labels, pred, top=1)[0]
    (a, b, n), m = max([(top["a"], top["b"], top["a_to_b"]), (top["b"], top["a"], top["b_to_a"])],
                       key=lambda t: t[2]), min(top["a_to_b"], top["b_to_a"])
    titles = [ax.get_title() for ax in figs["analysis_confusions"][0].axes]
    assert f"class {a}\nsaid\nclass {b}\n({n}×)" in titles
    assert (f"class {b}\nsaid\nclass {a}\n({m}×)" if m else f"class {b}\n(never said\nclass {a})") in titles
    # class gain: the bars are the per-class gain at 16 shots, computed here by loops
    zs = data["top3"]["zero-shot"][0][0][:, 0].numpy()
    gain = {c: 100 * (np.mean(pred[labels == c] == c) - np.mean(zs[labels == c] == c)) for c in range(C)}
    bars = figs["analysis_class_gain"][0].axes[1]
    for patch, tick in zip(bars.patches, sorted(bars.get_yticklabels(), key=lambda t: -t.get_position()[1])):
        assert patch.get_width() == pytest.approx(gain[int(tick.get_text().split()[-1])])
    # failures: one bar chart per mistake shown, its bars the kept probabilities
    probs = data["top3"][method][16][1].float().numpy()
    wrong = np.flatnonzero(pred != labels)
    first = wrong[np.argmax(probs[wrong, 0])]
    fail_bars = [ax for ax in figs["analysis_failures"][0].axes if ax.patches]
    assert len(fail_bars) == min(8, len(wrong))
    assert [p.get_width() for p in fail_bars[0].patches] == pytest.approx(probs[first], abs=1e-6)
    # features: the key markers sit at the projection of the kept keys
    snap = data["cache"]["tip-adapter-f"][16]
    assert sum(len(c.get_offsets()) for c in figs["analysis_features"][0].axes[-1].collections) == \
        len(snap["val_index"]) + 2 * len(snap["key_index"])
    md = analysis_section(run, tmp_path)
    for name in figs:
        assert f"![{name}]({name}.png)" in md and (tmp_path / f"{name}.pdf").exists()
    assert "would" not in md or "coursework" in md


def _prose(text):
    """The section's sentences: no tables, images, code, links or headings (as tests/test_report.py)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("|", "![", "#"))]
    return re.sub(r"`[^`]*`|\[[^\]]*\]\([^)]*\)", "", "\n".join(lines))


def test_the_chinese_section_states_the_english_numbers_in_chinese_prose(done, tmp_path):
    run = load_run(done.out)
    en = analysis_section(run, tmp_path / "en")
    zh = analysis_section(run, tmp_path / "zh", lang="zh")
    numbers = lambda t: sorted(re.findall(r"\d+\.\d+", t))  # noqa: E731
    assert numbers(zh) == numbers(en) and len(numbers(en)) > 50
    assert zh.startswith("## 定性分析") and zh.count("\n### ") == en.count("\n### ") == 5
    assert "### 最易混淆的类别" in zh and "### 错误样例（每类 16 个样本）" in zh
    for name in ("lp++", "tip-adapter-f", "class 0", "class 5"):  # "zero-shot" in prose is 零样本
        assert zh.count(name) == en.count(name), name
    english = re.findall(r"\b[A-Za-z]+ [a-z]+ [a-z]+ [a-z]+\b", _prose(zh))
    assert not english, english[:5]
    assert re.findall(r"\b[A-Za-z]+ [a-z]+ [a-z]+ [a-z]+\b", _prose(en))  # the check can see English
    # the English sentences as they were, their numbers counted here from the kept predictions
    data = load_analysis(done.out)
    name = analysis_figures(run)["method"]
    labels = np.array(data["labels"])
    pred = data["top3"][name][16][0][:, 0].numpy()
    wrong = int((pred != labels).sum())
    assert (f"At 16 shots {name} gets {wrong} of {len(labels)} val images wrong "
            f"({100 * wrong / len(labels):.1f} %); for ") in en
    assert f"The method shown is **{name}**, the best learnable method at 16 shots by mean val top-1 (" in en
    assert "### Failure gallery (16 shots)" in en and "### Per-class gain over zero-shot" in en
    # inside the report (a caption per figure) the paragraphs are there too, in its language
    caps = {}
    md = analysis_section(run, tmp_path / "cap", figure=lambda fig, n, cap: caps.setdefault(n, cap), lang="zh")
    assert set(caps) == {"analysis_confusions", "analysis_class_gain", "analysis_failures",
                         "analysis_features", "analysis_cache"}
    assert all(cap in zh and cap in md for cap in caps.values())


def test_a_report_section_without_analysis_data_says_so_in_its_language(tmp_path):
    from fewshot.report.i18n import tr

    run = {"dir": tmp_path, "records": [], "config": {}}
    for lang, expected in (("en", "This run kept no data"), ("zh", "本次运行没有保存定性分析所需的数据")):
        text = analysis_section(run, tmp_path, figure=lambda *a: "", lang=lang)
        assert text == tr("analysis_missing", lang) and text.startswith(expected)
    assert "rerun its zeroshot and method steps" in analysis_section(run, tmp_path)
