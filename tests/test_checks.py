"""check-data and feature extraction on broken and odd real-world files."""
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from fewshot.models.backbones import load_backbone
from fewshot.data.checks import check_dataset
from fewshot.data.datasets import load_dataset
from fewshot.features.encode import image_features
from fewshot.data.images import ImageError


@pytest.fixture()
def messy(small_world, tmp_path):
    root = tmp_path / "messy"
    shutil.copytree(small_world, root)
    val = sorted((root / "val").rglob("*.JPEG"))
    train = sorted((root / "train").rglob("*.JPEG"))[5:]  # past the world's own odd files
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
    assert str(cmyk) in report.converted["CMYK"] and str(gray) in report.converted["L"]
    assert len(report.converted["CMYK"]) == len(report.converted["L"]) == 2  # the world's own + planted
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


def test_one_pass_lists_every_planted_problem(small_world, tmp_path):
    """Layout and file problems together: one check-data run names all of them."""
    import numpy as np

    root = tmp_path / "planted"
    shutil.copytree(small_world, root)
    shutil.rmtree(root / "val" / "n90000003")  # class missing from val
    (root / "train" / "n99999999").mkdir()  # extra class folder, without a name
    Image.new("RGB", (8, 8)).save(root / "train" / "n99999999" / "x.JPEG")
    lines = (root / "classnames.txt").read_text().splitlines()
    (root / "classnames.txt").write_text("\n".join(lines[:-1] + ["broken-line"]) + "\n")
    val = sorted((root / "val").rglob("*.JPEG"))
    val[0].write_bytes(val[0].read_bytes()[:300])  # truncated
    val[1].write_bytes(b"")  # empty
    val[2].unlink()
    val[2].symlink_to("/etc/passwd")  # a link out of the dataset
    val[3].unlink()
    val[3].symlink_to(val[3])  # a link to itself
    Image.new("L", (9000, 5000)).save(val[4], format="PNG")  # 45 M pixels, above the limit
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(val[5], format="PNG")  # 16-bit: fine
    report = check_dataset(root, progress=False, workers=2)
    text = report.text()
    assert not report.usable
    for expected in ("Only in train/: n90000003, n99999999", "expected '<wnid> <class name>'",
                     "names without a folder", "outside the dataset", "empty file (0 bytes)",
                     "M pixels, above the limit"):
        assert expected in text, expected
    bad = dict(report.bad)
    assert {str(val[0]), str(val[1]), str(val[2]), str(val[3]), str(val[4])} <= set(bad)
    assert str(val[5]) not in bad and str(val[5]) in report.converted["I;16"]
    assert "Fix the" in text and "(all of them are listed)" in text
