"""The report's sentences against hand-built records whose answers are known by construction."""
from fewshot.narrative import honesty_gap, summary_sentences, sweet_spots
from fewshot.results import make_record

CTX = {"backbone": "b", "backbone_sha256": "0" * 64, "dataset": "d", "git_rev": "r", "device": "cpu"}


def _rec(method, shots, seed, top1, eval_set="val", role="final", hp=None, tuned_on="none"):
    return make_record(method, eval_set, {"top1": top1, "top5": 100.0}, context=CTX, shots=shots,
                       seed=seed, hyperparameters=hp, tuned_on=tuned_on, role=role)


def _world(path_mid=70.0):
    """Zero-shot 40 (val) / 50 (sketch); A wins at 1 shot, B at 16; B gains on val and loses on
    sketch; the λ path of B peaks inside at 0.5 with ``path_mid`` on both sets."""
    recs = [_rec("zero-shot", 0, None, 40.0), _rec("zero-shot", 0, None, 50.0, "sketch")]
    for seed in (1, 2):
        recs += [_rec("A", 1, seed, 55.0 + seed), _rec("B", 1, seed, 45.0),
                 _rec("A", 16, seed, 60.0), _rec("B", 16, seed, 80.0 + seed),
                 _rec("A", 16, seed, 52.0, "sketch"), _rec("B", 16, seed, 48.0, "sketch")]
        for lam, acc in ((0.0, 60.0), (0.5, path_mid), (1.0, 65.0)):
            recs += [_rec("B", 16, seed, acc, s, "sweep", {"lambda": lam}) for s in ("val", "sketch")]
    return recs


def test_summary_names_the_winners_the_shift_and_the_sweet_spot():
    text = "\n".join(summary_sentences(_world(), num_classes=100))
    assert "Zero-shot CLIP reaches 40.00 % top-1 on val (50.00 % on sketch)" in text
    assert "With 1 shot per class the best method is **A** (56.50 %, +16.50 points" in text
    assert "With 16 shots per class the best method is **B** (81.50 %, +41.50 points" in text
    assert "at 16 shots, B beats zero-shot on val but falls below it on sketch" in text
    assert "A beat" not in text  # A stays above zero-shot on sketch (52 > 50)
    assert "the mix 0.5 gives the best mean of val and the shifted sets (70.00 %)" in text
    assert "+5.00 points over the better one" in text  # 70 against max(60, 65)
    assert "at chance" not in text


def test_no_sweet_spot_is_claimed_inside_rounding_and_chance_is_called_out():
    flat = summary_sentences(_world(path_mid=65.004), num_classes=100)
    assert not any("the mix" in s for s in flat)  # 65.004 vs 65.00: not visibly above the end
    assert sweet_spots(_world(path_mid=65.004), ["sketch"])[0][:3] == ("B", 16, 0.5)
    chance = summary_sentences(_world(), num_classes=2)  # 40 % < 2 × 50 %
    assert chance[0].startswith("**Zero-shot accuracy is at chance** (40.00 % against 1/2 = 50.00 %)")


def test_honesty_gap_is_the_mean_over_shots_of_oracle_minus_honest():
    honest = [_rec("A", 1, 1, 50.0), _rec("A", 16, 1, 70.0), _rec("B", 16, 1, 60.0)]
    oracle = [_rec("A", 1, 1, 53.0, tuned_on="test-oracle"), _rec("A", 16, 1, 71.0, tuned_on="test-oracle")]
    assert honesty_gap(honest, oracle) == {"A": 2.0}  # B has no oracle twin
    text = summary_sentences(honest, oracle)
    assert "Tuning on the test set (the oracle run) adds +2.00 points on average" in text[-1]
