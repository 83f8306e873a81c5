"""The ETA before long steps: its arithmetic against a hand count, time_budget refusing before any
work, and the ImageNet default scope against the full grid."""
import json

import pytest
import torch

from fewshot import cli
from fewshot.protocol import budget
from fewshot.run.config import load_config
from fewshot.training.heads import train_head


@pytest.mark.parametrize("n,batch,drop", [(70, 32, True), (64, 32, True), (20, 32, True), (70, 32, False), (5, 4, False)])
def test_fit_steps_count_the_optimiser_steps_train_head_takes(n, batch, drop):
    w = torch.nn.Parameter(torch.zeros(3, 4))
    calls = []

    def logits(x):
        calls.append(len(x))
        return x @ w.T
    train_head([w], logits, torch.randn(2, n, 4), torch.randint(0, 3, (n,)), optimizer=torch.optim.SGD([w], lr=0.1),
               schedule=lambda t: 1.0, epochs=3, batch_size=batch, seed=0, progress=False, drop_last=drop)
    assert budget.fit_steps(n, batch, 3, drop_last=drop) == len(calls)


def _quick(world, ckpt, tmp, *extra):
    return ["run", "--config", "miniworld-quick", "--set", f"data={world}", f"backbone={ckpt}",
            f"out={tmp / 'run'}", f"cache_dir={tmp / 'cache'}", "merge_tasks=", "shots=[1,2]", *extra]


@pytest.fixture(scope="module")
def featured(small_world, tiny_clip_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("budget")
    assert cli.main(_quick(small_world, tiny_clip_path, tmp, "--steps", "zeroshot", "splits", "features")) == 0
    return tmp


def test_the_estimate_is_the_hand_count_times_the_measured_rate(featured):
    from fewshot.run.pipeline import Run

    run = Run(load_config("miniworld-quick", out=str(featured / "run"), cache_dir=str(featured / "cache")), resume={})
    cfg = run.cfg
    manifests = {s: json.loads((featured / "run" / "splits" / f"shots2_seed{s}.json").read_text())["items"] for s in (1, 2)}
    n = {s: len(items) for s, items in manifests.items()}  # 2 shots per class, by hand from the files
    held = {s: n[s] // 2 for s in n}  # fold 0 of cv_folds=2: the first shot of every class
    coop = run.plan("prompt")
    want = sum(cfg.coop_epochs * (max(1, m // 32) if m >= 32 else 1) for s in (1, 2) for m in (n[s], n[s] - held[s]))
    works = [w for w in coop.works if w.rate == "coop step"]  # (coop-16 has its own: one fit each)
    assert len(works) == 2 and sum(w.count for w in works) == want
    assert [w.rate for w in coop.works if w not in works] == ["coop-16 step"] * 2
    coop.probes = {"coop step": lambda: 0.25, "coop-16 step": lambda: 0.0}
    assert budget.estimate(coop)[0] == pytest.approx(0.25 * want)
    ft = run.plan("finetune")
    test_images = sum(len(s.labels) for s in run.eval_sets.values())
    for strategy in ("partial", "full", "lora"):
        steps = sum(cfg.ft_epochs * -(-m // cfg.ft_batch_size) for s in (1, 2) for m in (n[s], n[s] - held[s]))
        passes = 2 + (strategy != "lora")  # ft_alphas [0, 0.5, 1]: α = 0 is the cached features; + Fisher
        assert sum(w.count for w in ft.works if w.rate == f"ft-{strategy} step") == steps
        assert sum(w.count for w in ft.works if w.rate == f"ft-{strategy} encode") == \
            2 * (passes * test_images + held[1] * 3)
    lora = sum(w.count for w in ft.works if w.rate == "clip-lora step")
    assert lora == 2 * 2 * cfg.clip_lora_iters * 2  # 2 seeds × 2 fits × iterations per shot × 2 shots
    assert sorted(ft.cheaper(0.5)) == ["--set clip_lora_iters=1", "--set ft_shots=[2] ft_seeds=[1]"]  # ft_epochs is 1 already
    peers = run.plan("peers")  # CLAP: 300 epochs of ⌊M/256⌋ batches, at least one; M < 256 here
    assert all(m < 256 for s in (1, 2) for m in (n[s], len(json.loads((featured / "run" / "splits" / f"shots1_seed{s}.json").read_text())["items"])))
    assert [w.count for w in peers.works if w.rate == "clap step"] == [300] * 4  # shots 1, 2 × seeds 1, 2
    ft.probes = {k: (lambda: 0.0) for k in ft.probes}
    assert budget.check(ft, cfg, "step finetune") == 0.0  # the probes measure; nothing refused without a budget


def test_time_budget_stops_before_any_work_with_one_line_of_cheaper_settings(featured, small_world, tiny_clip_path,
                                                                               tmp_path, capsys):
    assert cli.main(_quick(small_world, tiny_clip_path, tmp_path, "time_budget=1e-9")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning: ")]
    assert len(err) == 1 and err[0].startswith("error: feature extraction (test sets) would take about "), err
    assert "more than time_budget=1e-09 min; cheaper: --set views=1" in err[0]
    assert not list((tmp_path / "cache").rglob("*.pt")) and not (tmp_path / "run" / "results").exists()
    # features cached: the prompt step is refused before its first fit, naming the narrower scope
    assert cli.main(_quick(small_world, tiny_clip_path, featured, "time_budget=1e-9", "--steps", "prompt")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning: ")]
    assert len(err) == 1 and err[0].startswith("error: step prompt would take about ")
    assert "cheaper: --set coop_epochs=1; --set ft_shots=[2] ft_seeds=[1]" in err[0]
    assert not (featured / "run" / "results" / "coop.jsonl").exists()


def test_imagenet_defaults_narrow_only_the_encoder_and_prompt_scope_and_full_restores_it():
    default, full = load_config("imagenet-rn50"), load_config("imagenet-rn50-full")
    assert {1, 5, 16} <= set(default.shots) and default.seeds == (1, 2, 3)  # every cached-feature method
    assert (default.ft_shots, default.ft_seeds, default.ft_epochs) == ((16,), (1,), 10)  # fine-tuning recipe kept
    assert (full.ft_shots, full.ft_seeds, full.coop_epochs, full.ft_epochs) == ((), (), 50, 10)  # published grid
    differ = {k for k, v in default.to_dict().items() if full.to_dict()[k] != v}
    assert differ == {"out", "ft_shots", "ft_seeds", "coop_epochs"}
    assert load_config("miniworld") == load_config("miniworld", time_budget=0.0)  # mini-world unchanged


def test_a_long_step_says_what_will_run_and_the_estimate_before_it_starts(capsys):
    from fewshot.run.config import RunConfig

    plan = budget.Plan([budget.Work("coop (16-shot, seed 1): 2 fit(s) × 10 epochs", 8750, "steps of batch 32", "coop step"),
                        budget.Work("encode val: 50,000 images", 50000, "image encodes", "encode")],
                       {"coop step": lambda: 0.02, "encode": lambda: 1e-3})
    seconds = budget.check(plan, RunConfig(), "step prompt", device="cuda")
    assert seconds == pytest.approx(8750 * 0.02 + 50)  # 175 s + 50 s
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[fewshot] step prompt: estimated 3 min 45 s on cuda, from a short measured warm-up:"
    assert out[1] == "  coop (16-shot, seed 1): 2 fit(s) × 10 epochs: 8,750 steps of batch 32 × 20.0 ms = 2 min 55 s"
    with pytest.raises(Exception, match=r"step prompt would take about 3 min 45 s on cuda \(measured\), more than time_budget=3 min"):
        budget.check(plan, RunConfig(time_budget=3), "step prompt", device="cuda")


def test_a_probes_setup_stays_out_of_the_rate(monkeypatch):
    """Building a fresh model for a probe is paid once per fit: with ``setup`` only ``run`` is timed
    (a fake clock: setup costs 10 s, the run 0.5 s for 4 units; each run gets its own fresh setup)."""
    now = [0.0]
    monkeypatch.setattr(budget.time, "perf_counter", lambda: now[0])
    built = []

    def setup():
        now[0] += 10.0
        built.append(object())
        return built[-1]

    seen = []

    def run(x):
        seen.append(x)
        now[0] += 0.5
    assert budget.seconds_per(run, 4, setup=setup) == pytest.approx(0.5 / 4)
    assert len(built) == 2 and seen == built  # a fresh one for the warm-up and for the timed run
    now[0] = 0.0
    assert budget.seconds_per(lambda: setup() and run(None), 4) == pytest.approx(10.5 / 4)  # without: counted
