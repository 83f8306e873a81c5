import urllib.error

import pytest
import torch

import clip
from fewshot.models import backbones
from fewshot.models.backbones import BackboneError, build_clip, load_backbone, save_checkpoint
from tests.conftest import TINY, TINY_VIT


@pytest.mark.parametrize("shape", [TINY, TINY_VIT], ids=["rn", "vit"])
def test_saved_tiny_clip_loads_through_clip_load_and_matches_the_original(tmp_path, shape):
    torch.manual_seed(1)
    model = build_clip(**shape).eval()
    tower = clip.model.VisionTransformer if shape is TINY_VIT else clip.model.ModifiedResNet
    assert isinstance(model.visual, tower)
    path = tmp_path / "m.pt"
    save_checkpoint(model, path)
    loaded, preprocess = clip.load(str(path), device="cpu", jit=False)  # the unmodified call
    # reference: the original weights rounded to fp16, as OpenAI's checkpoints are stored
    ref = clip.model.build_model(model.state_dict()).float().eval()
    ref.token_embedding.weight.data = ref.token_embedding.weight.data.half().float()  # saved in fp16
    x = torch.randn(2, 3, 32, 32)
    t = clip.tokenize(["a red star.", "a photo"], context_length=16)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_image(x), ref.encode_image(x), atol=1e-5)
        assert torch.allclose(loaded.encode_text(t), ref.encode_text(t), atol=1e-5)
    assert loaded.visual.input_resolution == 32 and loaded.context_length == 16
    assert isinstance(loaded.visual, tower)
    bb = load_backbone(str(path))  # the suite's loader: the same weights as clip.load's
    with torch.no_grad():
        assert torch.equal(bb.model.encode_image(x), loaded.encode_image(x))


def test_load_backbone_reports_properties(tiny_clip_path):
    bb = load_backbone(str(tiny_clip_path))
    assert (bb.input_resolution, bb.context_length, bb.embed_dim) == (32, 16, 64)
    assert bb.logit_scale == pytest.approx(1 / 0.07, rel=1e-3)  # CLIP's initial temperature
    assert len(bb.sha256) == 64


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(BackboneError, match="RN50.*miniclip-rn"):
        load_backbone("RN51")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone(str(tmp_path / "nope.pt"))


def test_wrong_checksum_says_what_to_do(tiny_clip_path):
    with pytest.raises(BackboneError, match="Checksum mismatch.*delete it"):
        load_backbone(str(tiny_clip_path), sha256="0" * 64)


def test_plain_state_dict_gets_a_clear_error(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(build_clip(**TINY).state_dict(), path)
    with pytest.raises(BackboneError, match="TorchScript"):
        load_backbone(str(path))


def test_named_download_without_network_explains_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(url, root):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(clip.clip, "_download", offline)
    with pytest.raises(BackboneError, match=r"RN50\.pt.*SHA-256 [0-9a-f]{64}"):
        load_backbone("RN50", download_root=str(tmp_path))


def test_registered_name_with_corrupt_cached_file_fails_on_checksum(tmp_path):
    (tmp_path / "RN50.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="Checksum mismatch"):
        load_backbone("RN50", download_root=str(tmp_path))


def test_registry_lists_openai_and_shipped_names():
    names = backbones.list_backbones()
    assert "RN50" in names and "miniclip-rn" in names and "miniclip-vit" in names


def test_a_shipped_checkpoint_not_made_yet_names_the_command_that_makes_it(tmp_path, monkeypatch):
    from fewshot.models.backbones import LazyBackbone, known_checksums, shipped_path

    monkeypatch.setattr(backbones, "_PACKAGE_DIR", tmp_path)  # a checkout without the shipped files
    assert not shipped_path("miniclip-vit").exists()
    assert "miniclip-vit" in backbones.list_backbones() and "" not in known_checksums()
    fix = r"miniclip-vit .*miniclip-vit\.pt\) is absent: make it with `python -m fewshot world train-clip --tower vit`"
    with pytest.raises(BackboneError, match=fix):
        load_backbone("miniclip-vit")
    with pytest.raises(BackboneError, match=fix):
        LazyBackbone("miniclip-vit", record=tmp_path / "backbone.json")
    with pytest.raises(BackboneError, match=r"`python -m fewshot world train-clip`"):
        load_backbone("miniclip-rn")


def test_weights_given_by_path_are_checked_against_every_known_checksum(tiny_clip_path, tmp_path, recwarn):
    import shutil
    import warnings

    from fewshot.models.backbones import shipped_path
    from fewshot.base.errors import FewshotWarning

    fake = tmp_path / "RN50.pt"  # named like OpenAI's RN50, but other bytes
    shutil.copyfile(tiny_clip_path, fake)
    with pytest.raises(BackboneError, match=r"named like CLIP RN50 but its SHA-256 .* \(./download_data.sh weights RN50\)"):
        load_backbone(str(fake))
    with pytest.warns(FewshotWarning, match="matches no known CLIP checkpoint"):
        load_backbone(str(tiny_clip_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewshotWarning)  # a known checkpoint by path: no warning
        assert load_backbone(str(shipped_path("miniclip-rn"))).name == "miniclip-rn.pt"


def test_lazy_backbone_reads_the_record_of_an_earlier_load_and_loads_only_when_asked(tiny_clip_path, tmp_path):
    import os
    import shutil

    from fewshot.models.backbones import LazyBackbone

    ckpt, record = tmp_path / "tiny.pt", tmp_path / "run" / "backbone.json"
    shutil.copy(tiny_clip_path, ckpt)
    ref = load_backbone(str(ckpt))
    first = LazyBackbone(str(ckpt), "cpu", record=record)  # no record yet: loads and writes one
    assert first.loaded and record.exists()
    again = LazyBackbone(str(ckpt), "cpu", record=record)  # the record: nothing loaded
    assert not again.loaded
    for name in ("name", "sha256") + LazyBackbone.FACTS:
        assert getattr(again, name) == getattr(ref, name), name
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # the model, on first use: the same weights
        assert torch.equal(again.model.encode_image(x), ref.model.encode_image(x)) and again.loaded
    st = os.stat(ckpt)  # a replaced checkpoint (new time) is loaded and checked again
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert LazyBackbone(str(ckpt), "cpu", record=record).loaded
    assert not LazyBackbone(str(ckpt), "cpu", record=record).loaded  # the record was renewed
    assert LazyBackbone(str(ckpt), "cpu", record=tmp_path / "other.json", writer=False).loaded
    assert LazyBackbone(str(ckpt), "cpu", record=tmp_path / "other.json").loaded  # not written


def test_steps_on_cached_features_import_neither_clip_nor_torchvision():
    import subprocess
    import sys

    code = ("import sys, fewshot.run.pipeline, fewshot.methods, fewshot.cli; fewshot.cli.build_parser(); "
            "bad = [m for m in ('clip', 'torchvision') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
