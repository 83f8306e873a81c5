import json
import shutil

import pytest
import torch
from PIL import Image

from fewshot.datasets import DatasetError, load_dataset, load_shift_set
from fewshot.images import ImageError, load_rgb
from fewshot.metrics import restrict_to_classes


def _copy(world, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(world, root)
    return root


def test_reads_layout_with_sorted_wnid_labels(small_world):
    ds = load_dataset(small_world)
    assert ds.num_classes == 100 and ds.wnids == sorted(ds.wnids)
    assert len(ds.train) == 500 and len(ds.val) == 200
    path, label = ds.train.items[7]
    assert path.startswith(f"train/{ds.wnids[label]}/")
    assert ds.classnames[0] == "red circle"


def test_train_and_val_class_mismatch_names_the_classes(small_world, tmp_path):
    root = _copy(small_world, tmp_path)
    shutil.rmtree(root / "val" / "n90000003")
    with pytest.raises(DatasetError, match="Only in train/: n90000003"):
        load_dataset(root)


def test_classnames_that_do_not_cover_the_folders(small_world, tmp_path):
    root = _copy(small_world, tmp_path)
    lines = (root / "classnames.txt").read_text().splitlines()
    (root / "classnames.txt").write_text("\n".join(lines[1:]) + "\nn99999999 ghost\n")
    with pytest.raises(DatasetError, match="without a name: n90000000.*without a folder: n99999999"):
        load_dataset(root)


def test_label2class_in_another_order_is_refused(small_world, tmp_path):
    root = _copy(small_world, tmp_path)
    mapping = json.loads((root / "label2class.json").read_text())
    mapping["0"], mapping["1"] = mapping["1"], mapping["0"]
    (root / "label2class.json").write_text(json.dumps(mapping))
    with pytest.raises(DatasetError, match="label 0"):
        load_dataset(root)


def test_corrupt_and_empty_jpegs_are_named(tmp_path, small_world):
    good = next((small_world / "val").rglob("*.jpg")).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="cut.jpg"):
        load_rgb(tmp_path / "cut.jpg")
    with pytest.raises(ImageError, match="empty.jpg.*0 bytes"):
        load_rgb(tmp_path / "empty.jpg")


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA"])
def test_odd_modes_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (20, 10), (200, 30, 30)).convert(mode)
    path = tmp_path / f"x.{'png' if mode in ('P', 'RGBA') else 'jpg'}"
    img.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (20, 10)


def test_v2_numeric_folders_sort_as_integers(tmp_path):
    wnids = [f"n{i:08d}" for i in range(12)]
    for folder in ["0", "2", "10", "11"]:
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "a.jpg")
    s = load_shift_set(tmp_path, "imagenet-v2", wnids)
    assert s.labels == [0, 2, 10, 11]  # string order would give 0, 10, 11, 2
    assert s.items[2] == ("10/a.jpg", 10)


def test_subset_sets_mask_logits_to_their_classes(tmp_path):
    wnids = [f"n{i:08d}" for i in range(6)]
    for w in (wnids[1], wnids[4]):
        (tmp_path / w).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / w / "a.jpg")
    s = load_shift_set(tmp_path, "imagenet-r", wnids)
    assert s.class_indices == [1, 4]
    logits = torch.tensor([[0.0, 1.0, 9.0, 0.0, 2.0, 0.0], [0.0, 3.0, 9.0, 0.0, 2.0, 0.0]])
    masked, labels = restrict_to_classes(logits, torch.tensor([4, 4]), s.class_indices)
    assert masked.tolist() == [[1.0, 2.0], [3.0, 2.0]] and labels.tolist() == [1, 1]
    with pytest.raises(DatasetError, match="not among"):
        load_shift_set(tmp_path, "imagenet-r", wnids[:3])
