"""FusionBench's task exports (image folders, the Hub's parquet, save_to_disk's arrow) imported into
the course layout: what ``load_dataset`` and the merge study read. The parquet and arrow tests need
pyarrow (not a dependency of the suite) and skip without it; the image-folder path never needs it."""
import builtins
import json
import shutil
from pathlib import Path

import pytest

from fewshot.base.errors import DatasetError
from fewshot.data.datasets import class_counts, load_dataset
from fewshot.data.fusionbench import fusionbench_task, list_fusionbench_tasks
from fewshot.world.fusionbench_import import MARKER, class_id, import_fusionbench, import_fusionbench_task

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "fusionbench"
SHAPES, DIGITS = FIXTURES / "toyshapes", FIXTURES / "toydigits"


def _tree(root: Path) -> dict:
    """{relative path: (bytes, mtime, inode)} of every file under ``root``."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _no_pyarrow(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", fake)


def test_the_table_holds_fusionbench_s_eight_tasks_with_their_class_counts():
    """Order of config/dataset/image_classification/train/the_eight_tasks.yaml; class counts as the
    datasets' own papers give them (an independent check of the copied lists)."""
    counts = {"sun397": 397, "stanford_cars": 196, "resisc45": 45, "eurosat": 10, "svhn": 10,
              "gtsrb": 43, "mnist": 10, "dtd": 47}
    assert list_fusionbench_tasks() == list(counts)
    for task, n in counts.items():
        names = fusionbench_task(task)["classnames"]
        assert len(names) == len(set(names)) == n and all(x == " ".join(x.split()) for x in names)
    assert fusionbench_task("tanganke/stanford_cars") is fusionbench_task("Stanford-Cars")
    assert fusionbench_task("svhn")["config"] == "cropped_digits" and fusionbench_task("toyshapes") is None
    table = json.loads((Path(__file__).resolve().parents[1] / "fewshot/data/fusionbench_tasks.json").read_text())
    assert len(table["commit"]) == 40 and table["repository"].endswith("tanganke/fusion_bench")


def test_an_image_folder_export_reads_as_the_course_layout_with_its_bytes(tmp_path):
    (task,) = import_fusionbench(FIXTURES, tmp_path / "tasks", ["toyshapes"])
    ds = load_dataset(task)
    assert ds.classnames == ["circle", "square"] and ds.wnids == [class_id(0), class_id(1)]
    assert class_counts(ds.train, 2) == [3, 3] and class_counts(ds.val, 2) == [2, 2]
    for split, course in (("train", "train"), ("test", "val")):
        for label, kind in enumerate(("circle", "square")):
            for src in sorted((SHAPES / split / kind).glob("*.png")):
                assert (task / course / class_id(label) / src.name).read_bytes() == src.read_bytes()
    assert json.loads((task / "label2class.json").read_text()) == {"label2class": {"0": "circle", "1": "square"}}
    from fewshot.merging.study import check_tasks, task_order

    check_tasks(str(tmp_path / "tasks"))
    assert task_order(tmp_path / "tasks") == ["toyshapes"]


def test_a_second_import_of_an_unchanged_source_leaves_the_folder_as_it_is(tmp_path):
    src = tmp_path / "src" / "toyshapes"
    shutil.copytree(SHAPES, src)
    task = import_fusionbench_task(src, tmp_path / "tasks")
    before = _tree(task)
    assert import_fusionbench_task(src, tmp_path / "tasks") == task and _tree(task) == before
    (src / "train" / "circle" / "circle_000.png").write_bytes((src / "test" / "circle" / "circle_001.png").read_bytes())
    import_fusionbench_task(src, tmp_path / "tasks")  # a changed source is imported again
    after = _tree(task)
    assert after["train/n90000000/circle_000.png"][0] == (src / "test/circle/circle_001.png").read_bytes()
    assert after[MARKER] != before[MARKER] and not list((tmp_path / "tasks").glob(".*"))


def test_a_folder_the_import_did_not_write_is_refused(tmp_path):
    (tmp_path / "tasks" / "toyshapes").mkdir(parents=True)
    (tmp_path / "tasks" / "toyshapes" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not written by `world import-fusionbench`"):
        import_fusionbench_task(SHAPES, tmp_path / "tasks")
    assert (tmp_path / "tasks" / "toyshapes" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("folders, names", [(("0", "1"), ["annual crop land", "forest"]),
                                            (("forest", "River"), ["forest", "river"])])
def test_a_known_task_takes_fusionbench_s_class_names_and_labels(tmp_path, folders, names):
    src = tmp_path / "src" / "eurosat"
    for split in ("train", "test"):
        for kind, folder in zip(("circle", "square"), folders):
            shutil.copytree(SHAPES / split / kind, src / split / folder)
    ds = load_dataset(import_fusionbench_task(src, tmp_path / "tasks"))
    labels = [0, 1] if folders[0] == "0" else [1, 8]  # EuroSAT's labels in FusionBench's list
    assert ds.classnames == names and ds.wnids == [class_id(y) for y in labels]


def test_a_missing_split_is_one_error_naming_the_folder(tmp_path):
    src = tmp_path / "toyshapes"
    shutil.copytree(SHAPES / "train", src / "train")
    with pytest.raises(DatasetError, match=rf"{src}: no 'test' split \(found train\)"):
        import_fusionbench_task(src, tmp_path / "tasks")
    assert not (tmp_path / "tasks").exists() or not any((tmp_path / "tasks").iterdir())


def test_a_label_folder_out_of_range_is_one_error_naming_it(tmp_path):
    src = tmp_path / "mnist"
    for split in ("train", "test"):
        shutil.copytree(SHAPES / split / "circle", src / split / "3")
        shutil.copytree(SHAPES / split / "square", src / split / "10")
    with pytest.raises(DatasetError, match=rf"{src / 'train' / '10'}: label 10 is out of range: the task has 10"):
        import_fusionbench_task(src, tmp_path / "tasks")


def test_a_class_in_one_split_only_is_one_error(tmp_path):
    src = tmp_path / "toyshapes"
    shutil.copytree(SHAPES, src)
    shutil.rmtree(src / "test" / "square")
    with pytest.raises(DatasetError, match=r"class 1 \(square\) has 3 train and 0 test images"):
        import_fusionbench_task(src, tmp_path / "tasks")


def test_parquet_without_pyarrow_is_one_clean_error(tmp_path, monkeypatch):
    _no_pyarrow(monkeypatch)
    with pytest.raises(DatasetError, match="needs pyarrow, which is not installed: `pip install pyarrow`"):
        import_fusionbench(FIXTURES, tmp_path / "tasks", ["toydigits"])
    assert not (tmp_path / "tasks" / "toydigits").exists()
    from fewshot.cli import main

    assert main(["world", "import-fusionbench", "--src", str(DIGITS), "--out", str(tmp_path / "t")]) == 2
    monkeypatch.undo()
    assert main(["world", "import-fusionbench", "--src", str(FIXTURES), "--out", str(tmp_path / "t"),
                 "--tasks", "toyshapes"]) == 0  # image folders need no pyarrow


# ---- parquet and arrow: need pyarrow -------------------------------------------------------------

def _rows(path: Path) -> list[tuple[int, bytes]]:
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(path).to_pylist()
    return [(r["label"], r["image"]["bytes"]) for r in table]


def test_a_hub_parquet_export_reads_as_the_course_layout_with_its_bytes(tmp_path):
    pytest.importorskip("pyarrow")
    (task,) = import_fusionbench(DIGITS, tmp_path / "tasks")
    ds = load_dataset(task)
    assert ds.classnames == ["zero", "one"]  # the files' ClassLabel names
    for split, course in (("train", ds.train), ("test", ds.val)):
        rows = _rows(DIGITS / "data" / f"{split}-00000-of-00001.parquet")
        assert class_counts(course, 2) == [sum(y == c for y, _ in rows) for c in (0, 1)]
        written = {Path(p).name: (y, (task / p).read_bytes()) for p, y in course.items}
        assert [written[f"{split}_{i:07d}.png"] for i in range(len(rows))] == rows
    before = _tree(task)
    import_fusionbench(DIGITS, tmp_path / "tasks")
    assert _tree(task) == before


def _write_parquet(path: Path, labels, images, names=("zero", "one")):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    meta = {b"huggingface": json.dumps({"info": {"features": {"label": {"names": list(names),
                                                                            "_type": "ClassLabel"}}}}).encode()}
    kind = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array([{"bytes": b, "path": None} for b in images], kind),
                      "label": pa.array(labels, pa.int64())})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path)


@pytest.mark.parametrize("labels, data, message", [
    ([0, 1, 5], None, r"train-00000-of-00001.parquet row 2: label 5 is out of range: the task has 2"),
    ([0, 1, 1], b"not an image", r"train-00000-of-00001.parquet row 1: the image is of no known image format"),
])
def test_a_malformed_parquet_row_is_one_error_naming_file_and_row(tmp_path, labels, data, message):
    rows = _rows(DIGITS / "data" / "train-00000-of-00001.parquet")[:3]
    src = tmp_path / "toydigits"
    shutil.copytree(DIGITS, src)
    images = [b for _, b in rows]
    if data is not None:
        images[1] = data
    _write_parquet(src / "data" / "train-00000-of-00001.parquet", labels, images)
    with pytest.raises(DatasetError, match=message):
        import_fusionbench_task(src, tmp_path / "tasks")
    assert not (tmp_path / "tasks").exists() or not any((tmp_path / "tasks").iterdir())


def test_a_save_to_disk_arrow_export_reads_as_the_course_layout(tmp_path):
    pa = pytest.importorskip("pyarrow")
    src = tmp_path / "src" / "svhn"  # a known task: FusionBench's class names
    for split in ("train", "test"):
        table = pa.Table.from_pylist([{"image": {"bytes": b, "path": None}, "label": y}
                                      for y, b in _rows(DIGITS / "data" / f"{split}-00000-of-00001.parquet")])
        (src / split).mkdir(parents=True)
        with pa.ipc.new_stream(str(src / split / "data-00000-of-00001.arrow"), table.schema) as w:
            w.write_table(table)
        (src / split / "state.json").write_text("{}")
    (src / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    ds = load_dataset(import_fusionbench_task(src, tmp_path / "tasks"))
    assert ds.classnames == ["0", "1"] and len(ds.train) == 6 and len(ds.val) == 4


def test_hidden_folders_beside_the_tasks_are_no_tasks(tmp_path):
    from fewshot.merging.study import task_order

    for name in ("b", "a", ".a.building"):
        (tmp_path / name).mkdir()
    assert task_order(tmp_path) == ["a", "b"]


def test_the_command_expands_its_paths_and_says_what_it_wrote(tmp_path, monkeypatch, capsys):
    from fewshot.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(SHAPES, tmp_path / "exports" / "toyshapes")
    assert main(["world", "import-fusionbench", "--src=~/exports", "--out=~/tasks"]) == 0
    assert "1 task(s) in" in capsys.readouterr().out and load_dataset(tmp_path / "tasks" / "toyshapes").num_classes == 2


def test_a_corruption_split_is_read_as_the_test_set_and_several_configs_need_a_choice(tmp_path):
    pytest.importorskip("pyarrow")
    src = tmp_path / "toydigits"
    shutil.copytree(DIGITS, src)
    shutil.copyfile(src / "data" / "test-00000-of-00001.parquet", src / "data" / "contrast-00000-of-00001.parquet")
    ds = load_dataset(import_fusionbench_task(src, tmp_path / "tasks", test_split="contrast"))
    assert {Path(p).name.split("_")[0] for p in ds.val.paths} == {"contrast"} and len(ds.val) == 4
    shutil.copytree(src / "data", src / "other")
    with pytest.raises(DatasetError, match=r"several configs \(data, other\); choose one with --hub-config"):
        import_fusionbench_task(src, tmp_path / "tasks2")
    assert len(load_dataset(import_fusionbench_task(src, tmp_path / "tasks2", config="other")).train) == 6


def test_the_merge_study_loads_an_imported_task(tmp_path, tiny_clip_path):
    """``merge_tasks=DIR`` on the import: the study's own loader (heads, k shots, crops) reads it."""
    import types

    from fewshot.merging.study import load_tasks, task_order
    from fewshot.models.backbones import load_backbone

    import_fusionbench(FIXTURES, tmp_path / "tasks", ["toyshapes"])
    cfg = types.SimpleNamespace(templates="single", cache_dir=str(tmp_path / "cache"), cv_folds=2)
    with pytest.warns(Warning):  # the tiny checkpoint's SHA-256 is no known CLIP's
        backbone = load_backbone(str(tiny_clip_path))
    (task,) = load_tasks(tmp_path / "tasks", task_order(tmp_path / "tasks"), backbone, cfg, 2, 1, "cpu")
    assert task.name == "toyshapes" and task.head.shape[0] == 2
    assert task.labels.tolist() == [0, 0, 1, 1] and task.val_labels.tolist() == [0, 0, 1, 1]
