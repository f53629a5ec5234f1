"""Tests for curl_moco.contrastive.encoders: values, not just shapes."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from layers import layer_signature
from torch import nn

from curl_moco.contrastive.encoders import (
    BACKBONES,
    VIT_SPECS,
    PixelEncoder,
    ProjectionHead,
    ResNetBackbone,
    ViTBackbone,
    conv_output_size,
    make_backbone,
    sincos_position_embedding,
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
    assert BACKBONES == ("pixel", "resnet18", "resnet50", "vit_small", "vit_base", "vit_micro")
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


def _layers(head: ProjectionHead) -> list[tuple]:
    return layer_signature(head.net)


def test_v3_heads_have_the_published_layers() -> None:
    # moco-v3 builder.py _build_mlp: bias-free Linears, BN + ReLU between, BN(affine=False) last
    assert _layers(ProjectionHead(2048, 256, "v3", 4096, num_layers=2)) == [  # ResNet projector
        ("Linear", 2048, 4096, False), ("BN", 4096, True), ("ReLU",),
        ("Linear", 4096, 256, False), ("BN", 256, False)]
    assert _layers(ProjectionHead(256, 256, "v3", 4096, num_layers=2, last_bn=False)) == [
        ("Linear", 256, 4096, False), ("BN", 4096, True), ("ReLU",),  # ResNet predictor
        ("Linear", 4096, 256, False)]
    assert _layers(ProjectionHead(384, 256, "v3", 4096, num_layers=3)) == [  # ViT projector
        ("Linear", 384, 4096, False), ("BN", 4096, True), ("ReLU",),
        ("Linear", 4096, 4096, False), ("BN", 4096, True), ("ReLU",),
        ("Linear", 4096, 256, False), ("BN", 256, False)]
    # v1/v2 heads unchanged
    assert _layers(ProjectionHead(512, 128, "mlp")) == [
        ("Linear", 512, 512, True), ("ReLU",), ("Linear", 512, 128, True)]
    assert _layers(ProjectionHead(512, 128, "mlp_bn", 64)) == [
        ("Linear", 512, 64, False), ("BN", 64, True), ("ReLU",), ("Linear", 64, 128, True)]
    with pytest.raises(ValueError, match="num_layers=0"):
        ProjectionHead(8, 4, "v3", num_layers=0)


def test_v3_head_forward_is_the_written_out_formula() -> None:
    head = ProjectionHead(6, 4, "v3", 10, num_layers=2).train()
    x = torch.randn(7, 6)

    def batch_norm(h: torch.Tensor) -> torch.Tensor:
        return (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)

    lin1, bn1, lin2 = head.net[0], head.net[1], head.net[3]
    hidden = torch.relu(batch_norm(x @ lin1.weight.T) * bn1.weight + bn1.bias)
    torch.testing.assert_close(head(x), batch_norm(hidden @ lin2.weight.T), rtol=1e-4, atol=1e-5)
    assert head.net[4].weight is None and head.net[4].bias is None  # no gamma, no beta


def test_sincos_position_embedding_values() -> None:
    table = sincos_position_embedding(2, 8)  # frequencies 1 and 10000 ** -0.5 = 0.01
    assert table.shape == (4, 8)
    s, c = math.sin, math.cos
    # patch index 2 = row 1, column 0 (row-major): [sin r w, cos r w, sin c w, cos c w]
    expected = torch.tensor([s(1), s(0.01), c(1), c(0.01), 0, 0, 1, 1])
    torch.testing.assert_close(table[2], expected)
    torch.testing.assert_close(table[1], torch.tensor([0, 0, 1, 1, s(1), s(0.01), c(1), c(0.01)]))
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_position_embedding(2, 6)


def test_vit_backbone_has_moco_v3_stability_measures() -> None:
    vit = ViTBackbone("vit_micro", image_size=32, patch_size=8)
    dim = VIT_SPECS["vit_micro"].hidden_dim
    assert vit.out_dim == dim == 64 and len(vit.encoder.layers) == 2
    pos = vit.encoder.pos_embedding
    assert pos.shape == (1, 17, dim) and not pos.requires_grad
    assert torch.equal(pos[0, 0], torch.zeros(dim))  # class token: no position
    torch.testing.assert_close(pos[0, 1:], sincos_position_embedding(4, dim))
    assert not vit.conv_proj.weight.requires_grad and not vit.conv_proj.bias.requires_grad
    bound = math.sqrt(6 / (3 * 8 * 8 + dim))  # Xavier over (3 * p * p) -> dim
    assert 0.9 * bound < vit.conv_proj.weight.abs().max() <= bound
    attn = vit.encoder.layers[0].self_attention
    qkv_bound = math.sqrt(6 / (dim + dim))  # q, k and v initialised as separate D x D matrices
    assert 0.9 * qkv_bound < attn.in_proj_weight.abs().max() <= qkv_bound
    assert attn.in_proj_bias.abs().max() == 0 and vit.class_token.abs().max() < 1e-5
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    out = vit(x)
    assert out.shape == (3, dim)
    torch.testing.assert_close(out, vit(x.float() / 255))
    out.sum().backward()
    assert vit.conv_proj.weight.grad is None and pos.grad is None  # frozen: never trained
    assert vit.class_token.grad is not None
    trainable = ViTBackbone("vit_micro", image_size=32, patch_size=8, stop_grad_patch=False)
    assert trainable.conv_proj.weight.requires_grad
    stack = make_backbone("vit_micro", in_channels=9, image_size=32, patch_size=8)
    assert stack.conv_proj.in_channels == 9 and stack(torch.rand(2, 9, 32, 32)).shape == (2, 64)
    with pytest.raises(ValueError, match="image_size=30 .* patch_size=8"):
        ViTBackbone("vit_micro", image_size=30, patch_size=8)


def test_vit_state_dict_strict_loads_into_torchvision() -> None:
    small = make_backbone("vit_small", image_size=224)
    assert small.out_dim == 384 and small.encoder.layers[0].self_attention.num_heads == 12
    assert sum(p.numel() for p in small.parameters()) == 21_665_664
    reference = torchvision.models.VisionTransformer(224, 16, 12, 12, 384, 1536)
    reference.heads = nn.Identity()
    reference.load_state_dict(small.torchvision_state_dict(), strict=True)
    micro = ViTBackbone("vit_micro", image_size=32, patch_size=8).eval()
    tv = torchvision.models.VisionTransformer(32, 8, 2, 4, 64, 256).eval()
    tv.heads = nn.Identity()
    tv.load_state_dict(micro.torchvision_state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(tv(x), micro(x))
    base = make_backbone("vit_base", image_size=224)
    vit_b_16 = torchvision.models.vit_b_16()
    vit_b_16.heads = nn.Identity()
    vit_b_16.load_state_dict(base.torchvision_state_dict(), strict=True)
