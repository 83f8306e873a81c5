import json
import shutil

import pytest
import torch
from PIL import Image

from fewshot.data.datasets import DatasetError, load_dataset
from fewshot.data.shifts import load_shift_set
from fewshot.data.images import ImageError, load_rgb
from fewshot.protocol.metrics import restrict_to_classes


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
    inner = mapping["label2class"]
    inner["0"], inner["1"] = inner["1"], inner["0"]
    (root / "label2class.json").write_text(json.dumps(mapping))
    with pytest.raises(DatasetError, match="2 label.*label 0 is 'green circle'"):
        load_dataset(root)


@pytest.mark.parametrize("form", ["nested names", "flat names", "flat wnids", "list", "pairs"])
def test_label2class_forms_in_use_are_all_read(small_world, tmp_path, form):
    root = _copy(small_world, tmp_path)
    lines = (root / "classnames.txt").read_text().splitlines()
    wnids, names = zip(*(line.split(" ", 1) for line in lines))
    data = {"nested names": {"label2class": {str(i): n for i, n in enumerate(names)}},
            "flat names": {str(i): n for i, n in enumerate(names)},
            "flat wnids": {str(i): w for i, w in enumerate(wnids)},
            "list": list(names), "pairs": {str(i): [w, n] for i, (w, n) in enumerate(zip(wnids, names))}}[form]
    (root / "label2class.json").write_text(json.dumps(data))
    assert load_dataset(root).classnames == list(names)


@pytest.mark.parametrize("text, why", [("", "not valid JSON"), ('{"label2class": {"0": "red ci', "not valid JSON"),
                                       ("{}", "expected"), ("[1, 2]", "not 'label': 'class name'"),
                                       ('{"label2class": {"a": "x"}}', "not 'label'"),
                                       ('{"label2class": {"\\u00b9": "x"}}', r"'\\xb9'.*digits 0-9"),
                                       ('{"label2class": {"\\u0663": "x"}}', r"'\\u0663'.*digits 0-9"),
                                       ('{"label2klass": {"0": "%s"}}' % ("x" * 500), r"'label2klass': \{'0': 'x+\.\.\. is not")])
def test_broken_label2class_is_named_without_a_traceback(small_world, tmp_path, text, why):
    root = _copy(small_world, tmp_path)
    (root / "label2class.json").write_text(text)
    with pytest.raises(DatasetError, match=f"label2class.json.*{why}"):
        load_dataset(root)


@pytest.mark.parametrize("text, why", [("", "is empty"), ("n90000000\n", r":1: expected '<wnid> <class name>'"),
                                       (b"\xff\xfe", "not UTF-8")])
def test_broken_classnames_is_named(small_world, tmp_path, text, why):
    root = _copy(small_world, tmp_path)
    path = root / "classnames.txt"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    with pytest.raises(DatasetError, match=f"classnames.txt.*{why}"):
        load_dataset(root)


def test_every_layout_problem_is_listed_in_one_error(small_world, tmp_path):
    root = _copy(small_world, tmp_path)
    shutil.rmtree(root / "val" / "n90000003")
    for f in (root / "train" / "n90000005").iterdir():
        f.unlink()
    lines = (root / "classnames.txt").read_text().splitlines()
    (root / "classnames.txt").write_text("\n".join(lines + ["n99999999 ghost"]) + "\n")
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    text = str(err.value)
    assert "3 problem(s)" in text and "Only in train/: n90000003" in text
    assert "names without a folder: n99999999" in text and "n90000005: class folder holds no images" in text


def test_shots_beyond_what_classes_hold(small_world, tmp_path):
    from fewshot.data.datasets import check_shots

    ds = load_dataset(small_world)  # 5 training images per class
    assert check_shots(ds, [1, 5]) == []
    with pytest.raises(DatasetError, match="shots=8: no class .* more than 5 training images"):
        check_shots(ds, [1, 8])
    root = _copy(small_world, tmp_path)
    for f in sorted((root / "train" / "n90000004").iterdir())[:2]:
        f.unlink()
    warnings = check_shots(load_dataset(root), [2, 4, 5])
    assert len(warnings) == 2 and "shots=4: 1 class(es)" in warnings[0] and "n90000004 (purple circle): 3" in warnings[0]


def test_corrupt_and_empty_jpegs_are_named(tmp_path, small_world):
    good = next((small_world / "val").rglob("*.JPEG")).read_bytes()
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


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    import numpy as np

    Image.fromarray(np.array([[0, 40000, 65535]], dtype=np.uint16)).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "I;16"
    px = np.asarray(load_rgb(tmp_path / "g.png"))
    assert px[0, :, 0].tolist() == [0, round(40000 * 255 / 65535), 255]  # PIL's convert gives 255


def test_huge_images_and_link_loops_are_image_errors(tmp_path):
    Image.new("L", (8000, 6000)).save(tmp_path / "big.png")  # 48 M pixels, a 100 KB file
    with pytest.raises(ImageError, match="big.png.*48 M pixels, above the limit of 40 M"):
        load_rgb(tmp_path / "big.png")
    (tmp_path / "loop.JPEG").symlink_to(tmp_path / "loop.JPEG")
    with pytest.raises(ImageError, match="loop.JPEG"):
        load_rgb(tmp_path / "loop.JPEG")


def test_check_data_names_a_non_ascii_label_key_in_one_line(small_world, tmp_path, capsys):
    from fewshot.cli import main

    root = _copy(small_world, tmp_path)
    (root / "label2class.json").write_text('{"label2class": {"\\u00b9": "tench"}}')  # "¹".isdigit() is True
    assert main(["check-data", str(root)]) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "label2class.json" in text and "'\\xb9'" in text and "Traceback" not in text
