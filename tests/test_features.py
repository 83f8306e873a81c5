import torch

from fewshot.features import cache as cx
from fewshot.features import encode as fx
from fewshot.features import preprocess as px
from fewshot.models.backbones import load_backbone
from fewshot.data.datasets import ImageSet, load_dataset
from fewshot.data.images import load_rgb


def _files(folder):
    return [p for p in folder.rglob("*.pt") if p.is_file()]


def _subset(ds, n):
    return ImageSet("sub", ds.root, ds.train.items[:n], ds.train.class_indices)


def test_cache_reuses_and_keys_change_with_inputs(tiny_clip_path, small_world, tmp_path):
    bb, ds = load_backbone(str(tiny_clip_path)), load_dataset(small_world)
    a = fx.image_features(bb, _subset(ds, 6), tmp_path, progress=False)
    files = _files(tmp_path)
    assert a.feats.shape == (6, 64) and a.feats.dtype == torch.float16 and len(files) == 1
    b = fx.image_features(bb, _subset(ds, 6), tmp_path, progress=False)  # from the cache
    assert torch.equal(a.feats, b.feats) and len(_files(tmp_path)) == 1
    fx.image_features(bb, _subset(ds, 5), tmp_path, progress=False)  # other manifest: new file
    assert len(_files(tmp_path)) == 2
    other = bb.__class__(**{**bb.__dict__, "sha256": "f" * 64})  # other checkpoint: new key
    fx.image_features(other, _subset(ds, 5), tmp_path, progress=False)
    assert len(_files(tmp_path)) == 3


def test_views_are_seeded_and_worker_independent(tiny_clip_path, small_world, tmp_path):
    bb, ds = load_backbone(str(tiny_clip_path)), load_dataset(small_world)
    s = _subset(ds, 4)
    v0 = fx.image_features(bb, s, tmp_path / "a", views=3, num_workers=0, progress=False).feats
    v2 = fx.image_features(bb, s, tmp_path / "b", views=3, num_workers=2, progress=False).feats
    assert v0.shape == (3, 4, 64) and torch.equal(v0, v2)
    assert not torch.equal(v0[0], v0[1])  # different views differ
    img = load_rgb(ds.root / s.paths[0])
    assert torch.equal(px.augment_views(img, 32, 2, 1, 0), px.augment_views(img, 32, 2, 1, 0))
    assert not torch.equal(px.augment_views(img, 32, 2, 1, 0), px.augment_views(img, 32, 2, 2, 0))


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_save(obj, f):  # f: the open temporary file (fewshot.base.atomic.atomic_torch_save)
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    key = cx.CacheKey("image", "b", "0" * 64, "p", "1" * 64)
    try:
        cx.cached(key, tmp_path, "x", lambda: {"feats": torch.zeros(2)})
    except KeyboardInterrupt:
        pass
    assert list(tmp_path.rglob("*")) == [tmp_path / "b"]  # the folder, no file, no temp file


def test_views_keep_each_forward_pass_within_batch_size(tiny_clip_path, small_world, tmp_path):
    bb, ds = load_backbone(str(tiny_clip_path)), load_dataset(small_world)
    seen, original = [], bb.model.encode_image
    bb.model.encode_image = lambda x: (seen.append(x.shape[0]), original(x))[1]
    out = fx.image_features(bb, _subset(ds, 10), tmp_path, views=4, batch_size=8, progress=False)
    assert out.feats.shape == (4, 10, 64)
    assert max(seen) <= 8 and sum(seen) == 40  # 2 images x 4 views per pass, not 8 x 4
