"""The fused ResNet tower computes what CLIP's own ModifiedResNet computes (CPU, fp32: the same
folded graph the GPU runs through cudnn's fused kernels)."""
import copy

import pytest
import torch

from fewshot.models import bn_fold as fusion
from fewshot.models.backbones import build_clip


def _tower(layers=(1, 2, 1, 1), width=16, res=64):
    """A random ModifiedResNet whose BatchNorms hold non-trivial statistics and affine terms."""
    torch.manual_seed(0)
    visual = build_clip(embed_dim=32, image_resolution=res, vision_layers=layers, vision_width=width,
                        context_length=8, transformer_width=64, transformer_layers=1).visual.eval()
    with torch.no_grad():
        for m in visual.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.3, 3.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return visual


def test_fold_batchnorm_known_answer():
    conv = torch.nn.Conv2d(1, 2, 1, bias=False)
    bn = torch.nn.BatchNorm2d(2, eps=0.0).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, 3.0]).view(2, 1, 1, 1))
        bn.running_mean.copy_(torch.tensor([1.0, -1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 9.0]))
        bn.weight.copy_(torch.tensor([1.0, 6.0]))
        bn.bias.copy_(torch.tensor([0.5, 0.0]))
    w, b = fusion.fold_batchnorm(conv, bn)
    # bn(conv(x)) = γ(w·x − μ)/σ + β: channel 0: (2x − 1)/2 + 0.5 = x; channel 1: 6(3x + 1)/3 = 6x + 2
    assert torch.allclose(w.flatten(), torch.tensor([1.0, 6.0]))
    assert torch.allclose(b, torch.tensor([0.0, 2.0]))


@pytest.mark.parametrize("layers,res", [((1, 2, 1, 1), 64), ((2, 1, 1, 2), 32)])
def test_fused_tower_equals_clip_module(layers, res):
    visual = _tower(layers, res=res)
    reference = copy.deepcopy(visual)  # CLIP's own forward, untouched
    keys = set(visual.state_dict())
    assert fusion.fuse_image_tower(visual)
    x = torch.randn(3, 3, res, res)
    with torch.no_grad():
        got, ref = visual(x), reference(x)
    assert got.shape == ref.shape == (3, 32)
    assert float((got - ref).norm() / ref.norm()) < 1e-5
    assert set(visual.state_dict()) == keys  # folded weights are not saved with the model


def test_train_mode_runs_clips_forward():
    visual = _tower()
    reference = copy.deepcopy(visual)
    fusion.fuse_image_tower(visual)
    visual.train()
    reference.train()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(visual(x), reference(x))  # batch statistics, not the folded snapshot


def test_vit_tower_is_left_alone():
    import clip

    visual = clip.model.VisionTransformer(input_resolution=32, patch_size=16, width=64, layers=1,
                                          heads=1, output_dim=32)
    assert not fusion.fuse_image_tower(visual)
    assert "forward" not in vars(visual) and not hasattr(visual, "fused_params")


def test_a_failing_fused_kernel_leaves_the_tower_unfused(monkeypatch):
    def unsupported(*args):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED")

    monkeypatch.setattr(fusion, "_conv_relu", unsupported)
    visual = _tower()
    with pytest.warns(UserWarning, match="NOT_SUPPORTED"):
        assert not fusion.fuse_image_tower(visual)
    assert "forward" not in vars(visual) and not hasattr(visual, "fused_params")


def test_a_wrong_fused_result_leaves_the_tower_unfused(monkeypatch):
    monkeypatch.setattr(fusion, "_conv_add_relu", lambda x, w, b, residual: residual * 0)
    visual = _tower()
    with pytest.warns(UserWarning, match="relative difference"):
        assert not fusion.fuse_image_tower(visual)
    assert "forward" not in vars(visual)
