"""Tests for curl_moco.contrastive.encoders: values, not just shapes."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from curl_moco.contrastive.encoders import (
    BACKBONES,
    PixelEncoder,
    ProjectionHead,
    ResNetBackbone,
    conv_output_size,
    make_backbone,
)

# Tiny tensors: one thread is faster and avoids contention on a busy 2-core CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("size, side", [(84, 35), (100, 43), (64, 25)])
def test_pixel_encoder_conv_out_dim(size: int, side: int) -> None:
    enc = PixelEncoder(9, size)
    assert conv_output_size(size, 4) == side
    assert enc.conv_out_dim == 32 * side * side
    h = enc.forward_conv(torch.zeros(2, 9, size, size, dtype=torch.uint8))
    assert h.shape == (2, enc.conv_out_dim)


def test_pixel_encoder_conv_out_dim_other_depth() -> None:
    enc = PixelEncoder(3, 84, num_layers=2, num_filters=8)
    assert enc.conv_out_dim == 8 * 39 * 39
    assert enc.forward_conv(torch.rand(1, 3, 84, 84)).shape == (1, 8 * 39 * 39)


def test_pixel_encoder_output_shape_and_layernorm() -> None:
    enc = PixelEncoder(9, 84, feature_dim=50)
    assert (enc.in_channels, enc.image_size, enc.feature_dim, enc.out_dim) == (9, 84, 50, 50)
    x = torch.randint(0, 256, (4, 9, 84, 84), dtype=torch.uint8)
    z = enc(x)
    assert z.shape == (4, 50)
    # Linear then LayerNorm (weight 1, bias 0 at init), written out by hand.
    y = enc.forward_conv(x) @ enc.fc.weight.T + enc.fc.bias
    mean, var = y.mean(dim=1, keepdim=True), y.var(dim=1, unbiased=False, keepdim=True)
    torch.testing.assert_close(z, (y - mean) / torch.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(4), atol=1e-5, rtol=0)


def test_pixel_encoder_uint8_equals_float_over_255() -> None:
    enc = PixelEncoder(9, 84)
    x = torch.randint(0, 256, (3, 9, 84, 84), dtype=torch.uint8)
    assert torch.equal(enc(x), enc(x.float() / 255))
    # float input is NOT rescaled: x.float() (0..255) gives a different result.
    assert not torch.allclose(enc(x), enc(x.float()))


def test_pixel_encoder_forward_is_head_of_conv_and_tanh() -> None:
    enc = PixelEncoder(3, 84, feature_dim=7)
    x = torch.rand(2, 3, 84, 84)
    assert torch.equal(enc(x), enc.head(enc.forward_conv(x)))
    tanh_enc = PixelEncoder(3, 84, feature_dim=7, output_activation="tanh")
    tanh_enc.load_state_dict(enc.state_dict())
    assert torch.equal(tanh_enc(x), torch.tanh(enc(x)))


def test_pixel_encoder_detach_conv_blocks_conv_gradients() -> None:
    enc = PixelEncoder(3, 84)
    x = torch.rand(2, 3, 84, 84)
    w = torch.randn(2, enc.feature_dim)
    (enc(x, detach_conv=True) * w).sum().backward()
    assert all(c.weight.grad is None for c in enc.convs)
    assert enc.fc.weight.grad is not None and enc.fc.weight.grad.abs().sum() > 0
    (enc(x) * w).sum().backward()
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in enc.convs)


def test_tie_conv_weights_shares_storage() -> None:
    critic, actor = PixelEncoder(9, 84), PixelEncoder(9, 84)
    x = torch.rand(2, 9, 84, 84)
    assert not torch.equal(critic.forward_conv(x), actor.forward_conv(x))
    actor.tie_conv_weights_to(critic)
    for a, c in zip(actor.convs, critic.convs):
        assert a.weight is c.weight and a.bias is c.bias
        assert a.weight.data_ptr() == c.weight.data_ptr()
    assert torch.equal(critic.forward_conv(x), actor.forward_conv(x))
    with torch.no_grad():
        critic.convs[0].weight.mul_(2.0)  # an optimiser step on the critic moves the actor too
    assert torch.equal(critic.forward_conv(x), actor.forward_conv(x))
    assert actor.fc.weight is not critic.fc.weight  # heads stay separate
    assert not torch.equal(critic(x), actor(x))
    # Tied parameters are listed once in a joint module.
    joint = nn.ModuleList([actor, critic])
    assert len(list(joint.parameters())) == len(list(critic.parameters())) + 4


def test_tie_conv_weights_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="in_channels"):
        PixelEncoder(9, 84).tie_conv_weights_to(PixelEncoder(3, 84))


def test_pixel_encoder_bad_settings() -> None:
    with pytest.raises(ValueError, match="image_size=8"):
        PixelEncoder(3, 8)
    with pytest.raises(ValueError, match="output_activation"):
        PixelEncoder(3, 84, output_activation="relu")
    with pytest.raises(ValueError, match="num_layers"):
        PixelEncoder(3, 84, num_layers=0)
    enc = PixelEncoder(3, 84)
    with pytest.raises(ValueError, match="image_size=84"):
        enc(torch.rand(1, 3, 100, 100))
    with pytest.raises(ValueError, match="in_channels=3"):
        enc(torch.rand(1, 9, 84, 84))


def test_resnet18_loads_strict_into_torchvision_and_matches() -> None:
    ours = ResNetBackbone("resnet18").eval()
    assert ours.out_dim == 512
    ref = torchvision.models.resnet18()
    ref.fc = nn.Identity()
    sd = ours.torchvision_state_dict()
    assert not any(k.startswith("fc.") for k in sd)
    ref.load_state_dict(sd, strict=True)
    ref.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
        # channels_last input gives the same features.
        cl = ours(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref(x), rtol=1e-5, atol=1e-5)


def test_resnet50_state_dict_keys_match_torchvision() -> None:
    with torch.device("meta"):  # names and shapes only: no memory, no init cost, never run
        ours = ResNetBackbone("resnet50")
        ref = torchvision.models.resnet50()
    assert ours.out_dim == 2048
    ref.fc = nn.Identity()
    ref.load_state_dict(ours.torchvision_state_dict(), strict=True)  # checks names and shapes
    assert ours.torchvision_state_dict().keys() == ref.state_dict().keys()


def test_resnet_uint8_and_in_channels_and_small_input() -> None:
    enc = ResNetBackbone("resnet18", in_channels=9).eval()
    assert enc.conv1.weight.shape == (64, 9, 7, 7)
    x = torch.randint(0, 256, (2, 9, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(enc(x), enc(x.float() / 255))
    small = ResNetBackbone("resnet18", small_input=True).eval()
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    sizes: list[tuple[int, ...]] = []
    small.layer4.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape)))
    with torch.no_grad():
        assert small(torch.rand(2, 3, 16, 16)).shape == (2, 512)
    assert sizes == [(2, 512, 2, 2)]  # 16 / 8: no stem down-sampling


@pytest.mark.parametrize("kind, n_linear", [("linear", 1), ("mlp", 2), ("mlp_bn", 2)])
def test_projection_head(kind: str, n_linear: int) -> None:
    head = ProjectionHead(16, 8, kind=kind, hidden_dim=32)
    assert head.out_dim == 8
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == n_linear
    x = torch.randn(5, 16)
    y = head(x)
    assert y.shape == (5, 8)
    if kind == "linear":
        torch.testing.assert_close(y, x @ linears[0].weight.T + linears[0].bias)
    elif kind == "mlp":
        assert linears[0].out_features == 32
        expected = torch.relu(x @ linears[0].weight.T + linears[0].bias)
        torch.testing.assert_close(y, expected @ linears[1].weight.T + linears[1].bias)
    else:
        assert any(isinstance(m, nn.BatchNorm1d) for m in head.modules())


def test_projection_head_defaults_and_errors() -> None:
    head = ProjectionHead(12, 4, kind="mlp")
    assert head.net[0].out_features == 12  # hidden_dim defaults to in_dim (MoCo v2)
    with pytest.raises(ValueError, match="kind='conv'"):
        ProjectionHead(12, 4, kind="conv")


def test_make_backbone() -> None:
    assert BACKBONES == ("pixel", "resnet18", "resnet50")
    pixel = make_backbone("pixel", in_channels=9, image_size=100, feature_dim=20, num_layers=2)
    assert isinstance(pixel, PixelEncoder)
    assert (pixel.out_dim, pixel.in_channels, pixel.image_size, pixel.num_layers) == (20, 9, 100, 2)
    res = make_backbone("resnet18", in_channels=6, small_input=True)
    assert isinstance(res, ResNetBackbone) and res.out_dim == 512 and res.in_channels == 6
    with pytest.raises(KeyError) as info:
        make_backbone("vgg16")
    for name in BACKBONES:
        assert name in str(info.value)
    assert "vgg16" in str(info.value)


def test_pixel_encoder_curl_init_is_delta_orthogonal():
    torch.manual_seed(0)
    enc = PixelEncoder(9, 84, feature_dim=50, num_filters=32)
    first, second = enc.convs[0].weight, enc.convs[1].weight
    # All kernel taps but the centre are zero; the centre matrix is orthogonal (ReLU gain).
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1, 1] = False
    assert first[:, :, mask].abs().max() == 0 and second[:, :, mask].abs().max() == 0
    centre = second[:, :, 1, 1]
    gain = torch.nn.init.calculate_gain("relu")
    torch.testing.assert_close(centre @ centre.T, gain**2 * torch.eye(32), atol=1e-5, rtol=0)
    assert all(conv.bias.abs().max() == 0 for conv in enc.convs)
    w = enc.fc.weight  # (50, conv_out_dim): orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(50), atol=1e-4, rtol=0)
    default = PixelEncoder(9, 84, init="torch")
    assert default.convs[1].weight[:, :, mask].abs().max() > 0
    with pytest.raises(ValueError, match="init='nope'"):
        PixelEncoder(9, 84, init="nope")
