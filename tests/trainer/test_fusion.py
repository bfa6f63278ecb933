import torch
from torch import nn

from trainer.fusion import folded_copy
from trainer.model import build_model


def _random_batchnorm_stats(model: nn.Module) -> None:
    """Fresh models have mean 0, variance 1: folding them would change almost nothing."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(shape, generator=generator) * 0.1)


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_folded_copy_computes_the_same_layer_features_without_batchnorm():
    model = build_model("resnet34", 4, "none", seed=0, layers=3).eval()
    _random_batchnorm_stats(model)
    keys = list(model.state_dict())
    folded = folded_copy(model)
    assert _batchnorms(folded) == 0
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = model.layer_features(x), folded.layer_features(x)
    assert len(want) == len(got) == 3
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    # the model that trains and is checkpointed is untouched
    assert list(model.state_dict()) == keys and _batchnorms(model) > 0


class ConvFeedsTwo(nn.Module):
    """The conv's output feeds its BatchNorm and a skip: folding would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_a_conv_output_used_twice_keeps_its_batchnorm():
    model = ConvFeedsTwo().eval()
    _random_batchnorm_stats(model)
    copy = folded_copy(model)
    assert _batchnorms(copy) == 1 and copy is not model
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x))


def test_a_model_without_pairs_is_copied_as_is():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU())
    copy = folded_copy(model)
    assert copy is not model and not copy.training
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x))


def _same_pads(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(m.static_padding.padding) for m in model.modules()
            if isinstance(getattr(m, "static_padding", None), nn.ZeroPad2d)]


def test_lite0_copy_pads_in_its_convolutions_and_clamps_in_place():
    model = build_model("efficientnet_lite0", 4, "none", seed=0).eval()
    _random_batchnorm_stats(model)
    before = _same_pads(model)
    copy = folded_copy(model)
    after = _same_pads(copy)
    # the stride-1 depthwise pads are symmetric and move into the conv; stride 2 pads stay
    assert any(p[0] == p[1] for p in before) and all(p[0] != p[1] or p[2] != p[3] for p in after)
    assert 0 < len(after) < len(before)
    assert all(m.inplace for m in copy.modules() if isinstance(m, nn.ReLU6))
    assert _same_pads(model) == before  # the trained model keeps its layers
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(copy.layer_features(x)[0], model.layer_features(x)[0],
                                   rtol=1e-3, atol=1e-3)


class ReluFeedsSkip(nn.Module):
    """The ReLU's input is also the skip: running it in place would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.relu(y) + y


def test_an_activation_whose_input_is_reused_is_not_run_in_place():
    model = ReluFeedsSkip().eval()
    copy = folded_copy(model)
    assert not copy.relu.inplace
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x))
