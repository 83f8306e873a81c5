import json
import shutil

from fewshot.data.datasets import load_dataset
from fewshot.data.splits import make_manifest, manifest_bytes, shot_ranks, write_manifests


def test_nested_exact_and_deterministic(small_world, tmp_path):
    ds = load_dataset(small_world)
    sets = {k: make_manifest(ds, k, seed=1) for k in (1, 2, 4, 5, 8)}
    for k, m in sets.items():
        per_class = {}
        for _, y in m["items"]:
            per_class[y] = per_class.get(y, 0) + 1
        assert set(per_class.values()) == {min(k, 5)}  # 5 images per class in this fixture
    for small, big in [(1, 2), (2, 4), (4, 5)]:
        assert set(map(tuple, sets[small]["items"])) <= set(map(tuple, sets[big]["items"]))
    assert manifest_bytes(make_manifest(ds, 2, 1)) == manifest_bytes(sets[2])
    assert make_manifest(ds, 2, 2)["items"] != sets[2]["items"]


def test_same_bytes_whatever_the_file_creation_order(small_world, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(small_world, a)
    for src in sorted(small_world.rglob("*"), reverse=True):  # create in reverse order
        dst = b / src.relative_to(small_world)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    pa = write_manifests(load_dataset(a), tmp_path / "ma", shots=(1, 4), seeds=(1, 2))
    pb = write_manifests(load_dataset(b), tmp_path / "mb", shots=(1, 4), seeds=(1, 2))
    assert [p.name for p in pa] == ["shots1_seed1.json", "shots4_seed1.json",
                                    "shots1_seed2.json", "shots4_seed2.json"]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(pa, pb))
    m = json.loads(pa[1].read_text())
    assert set(m) == {"shots", "seed", "classes", "items", "short_classes"} and m["shots"] == 4
    assert m["short_classes"] == {}  # every class of the fixture holds 5 >= 4 images


def test_shot_ranks_count_within_class():
    items = [["a", 0], ["b", 0], ["c", 1], ["d", 0], ["e", 1]]
    assert shot_ranks(items) == [0, 1, 0, 2, 1]
