"""check-data and feature extraction on broken and odd real-world files."""
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from fewshot.backbones import load_backbone
from fewshot.checks import check_dataset
from fewshot.datasets import load_dataset
from fewshot.features import image_features
from fewshot.images import ImageError


@pytest.fixture()
def messy(small_world, tmp_path):
    root = tmp_path / "messy"
    shutil.copytree(small_world, root)
    val = sorted((root / "val").rglob("*.jpg"))
    train = sorted((root / "train").rglob("*.jpg"))
    data = val[0].read_bytes()
    val[0].write_bytes(data[: len(data) // 3])  # truncated body
    val[1].write_bytes(b"")  # zero bytes
    Image.open(train[0]).convert("CMYK").save(train[0])
    Image.open(train[1]).convert("L").save(train[1])
    return root, val[0], val[1], train[0], train[1]


def test_report_lists_every_problem(messy):
    root, cut, empty, cmyk, gray = messy
    report = check_dataset(root, progress=False)
    assert not report.usable
    bad = dict(report.bad)
    assert str(cut) in bad and bad[str(empty)] == "empty file (0 bytes)"
    assert report.converted["CMYK"] == [str(cmyk)] and report.converted["L"] == [str(gray)]
    assert report.counts == {"train": (100, 500), "val": (100, 200)}
    text = report.text()
    assert "UNUSABLE: 2 file(s) cannot be used" in text and "converted to RGB" in text


def test_cli_exit_codes(messy, small_world):
    run = lambda d: subprocess.run([sys.executable, "-m", "fewshot", "check-data", str(d)],  # noqa: E731
                                   capture_output=True, text=True)
    bad, good = run(messy[0]), run(small_world)
    assert bad.returncode == 1 and str(messy[1]) in bad.stdout
    assert good.returncode == 0 and "OK: the dataset can be used." in good.stdout
    shutil.rmtree(messy[0] / "val" / "n90000005")
    layout = run(messy[0])
    assert layout.returncode == 1 and "Only in train/: n90000005" in layout.stdout


def test_extraction_names_a_bad_file_and_skips_only_when_asked(messy, tiny_clip_path, tmp_path):
    root, cut, *_ = messy
    bb, ds = load_backbone(str(tiny_clip_path)), load_dataset(root)
    with pytest.raises(ImageError, match=cut.name):
        image_features(bb, ds.val, tmp_path / "c1", progress=False)
    out = image_features(bb, ds.val, tmp_path / "c2", progress=False, skip_bad=True)
    assert len(out.skipped) == 2 and out.feats.shape[0] == len(ds.val) - 2 == len(out.labels)
    assert str(cut.relative_to(root)) in out.skipped
    train = image_features(bb, ds.train, tmp_path / "c3", progress=False)  # CMYK and gray decode
    assert train.feats.shape[0] == len(ds.train)
