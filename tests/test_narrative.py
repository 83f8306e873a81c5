"""The report's sentences against hand-built records whose answers are known by construction."""
from fewshot.report.narrative import honesty_gap, summary_sentences, sweet_spots
from fewshot.protocol.results import make_record

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


def test_summary_names_a_winner_only_beyond_the_spread_and_the_shift():
    text = "\n".join(summary_sentences(_world(), num_classes=100))
    assert "Zero-shot CLIP reaches 40.00 % top-1 on val (50.00 % on sketch)" in text
    # A: 56, 57 (56.50 ± 0.71) against B: 45, 45 -> 11.5 points, far beyond the std
    assert ("With 1 shot per class the best method is **A** (56.50 ± 0.71 %, +16.50 points over "
            "zero-shot), ahead of B (45.00 ± 0.00 %) by 11.50 points, more than the seeds' spread") in text
    assert "With 16 shots per class the best method is **B** (81.50 ± 0.71 %, +41.50 points" in text
    assert "at 16 shots, B beats zero-shot on val but falls below it on sketch" in text
    assert "A beat" not in text  # A stays above zero-shot on sketch (52 > 50)
    assert "the mix" not in text and "at chance" not in text  # a mix chosen on test is no summary claim


def test_a_lead_inside_the_spread_or_the_sampling_error_is_a_tie():
    recs = [_rec("zero-shot", 0, None, 40.0)]
    for seed, (a, b, c) in enumerate(((58.0, 57.0, 50.0), (66.0, 58.0, 50.2)), 1):  # A 62 ± 5.66, B 57.5 ± 0.71
        recs += [_rec("A", 1, seed, a), _rec("B", 1, seed, b), _rec("C", 1, seed, c)]
    text = summary_sentences(recs)
    assert ("With 1 shot per class no single method is best: **A** tied with B "
            "(62.00 ± 5.66 % vs 57.50 ± 0.71 %); the differences are within the seeds' spread (std)") in text[1]
    assert "Below zero-shot" not in text[1]
    close = [_rec("A", 16, s, 78.73 + s / 1000) for s in (1, 2)] + [_rec("B", 16, s, 78.63) for s in (1, 2)]
    assert "best method is **A**" in summary_sentences(close)[0]  # 0.10 points > std 0.0007
    sentence = summary_sentences(close, num_test=5000)[0]  # but < sqrt(.787 * .213 / 5000) = 0.58
    assert "**A** tied with B" in sentence and "(±0.58 points for 5000 images)" in sentence


def test_a_winner_on_one_seed_says_so_and_chance_is_called_out():
    one = [_rec("zero-shot", 0, None, 40.0), _rec("A", 16, 1, 50.0), _rec("B", 16, 1, 45.0)]
    text = summary_sentences(one, num_test=5000)[1]
    assert "the best method is **A** (50.00 %" in text and "on one seed only" in text
    assert "seeds' spread (std)" not in text  # there is no spread to be beyond
    assert sweet_spots(_world(path_mid=65.004), ["sketch"])[0][:3] == ("B", 16, 0.5)
    chance = summary_sentences(_world(), num_classes=2)  # 40 % < 2 × 50 %
    assert chance[0].startswith("**Zero-shot accuracy is at chance** (40.00 % against 1/2 = 50.00 %)")


def test_honesty_gap_is_the_mean_over_shots_of_oracle_minus_honest():
    honest = [_rec("A", 1, 1, 50.0), _rec("A", 16, 1, 70.0), _rec("B", 16, 1, 60.0)]
    oracle = [_rec("A", 1, 1, 53.0, tuned_on="test-oracle"), _rec("A", 16, 1, 71.0, tuned_on="test-oracle")]
    assert honesty_gap(honest, oracle) == {"A": 2.0}  # B has no oracle twin
    text = summary_sentences(honest, oracle)
    assert "Tuning on the test set (the oracle run) adds +2.00 points on average" in text[-1]


def test_a_shift_loss_is_named_only_beyond_the_sampling_error():
    """One seed, 5,000 test images (±0.7 points at 40–50 %): C's +0.06 on val and −0.04 on sketch
    are no change; D's +5 and −5 are."""
    recs = [_rec("zero-shot", 0, None, 40.0), _rec("zero-shot", 0, None, 50.0, "sketch"),
            _rec("C", 16, 1, 40.06), _rec("C", 16, 1, 49.96, "sketch"),
            _rec("D", 16, 1, 45.0), _rec("D", 16, 1, 45.0, "sketch")]
    text = "\n".join(summary_sentences(recs, num_test=5000))
    assert "at 16 shots, D beats zero-shot on val but falls below it on sketch" in text
    assert "C beat" not in text and "C and D" not in text


def test_the_accuracy_caption_weighs_each_set_by_its_own_size():
    """0.14 points between two methods on a 5,000-image shift set is a tie (±0.5 points), though
    the seeds agree exactly; with the set's size unknown the same lead names a best method."""
    from fewshot.report.captions import caption_accuracy

    recs = [_rec("zero-shot", 0, None, 40.0), _rec("zero-shot", 0, None, 50.0, "sketch")]
    for seed in (1, 2):
        recs += [_rec("A", 16, seed, 60.0), _rec("B", 16, seed, 70.0),
                 _rec("A", 16, seed, 87.32, "sketch"), _rec("B", 16, seed, 87.18, "sketch")]
    sized = caption_accuracy(recs, ["A", "B"], {"val": 5000, "sketch": 5000})
    unsized = caption_accuracy(recs, ["A", "B"], 5000)
    assert "On sketch: with 16 shots per class no single method is best: **A** tied with B" in sized
    assert "On sketch: with 16 shots per class the best method is **A**" in unsized
    assert "On val: with 16 shots per class the best method is **B**" in sized
