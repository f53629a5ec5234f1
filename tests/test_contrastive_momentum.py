"""Tests for curl_moco.contrastive.momentum: EMA values, buffer modes, no gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from curl_moco.contrastive.encoders import PixelEncoder
from curl_moco.contrastive.momentum import MomentumEncoder, ema_update

# Tiny tensors: one thread is faster and avoids contention on a busy 2-core CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()  # BatchNorm's weight/bias too, so that no two nets share a value
    return net


def _fill(module: nn.Module, start: float) -> None:
    """Small integers (exact in float32) in every parameter and float buffer."""
    with torch.no_grad():
        for i, t in enumerate(list(module.parameters()) + list(module.buffers())):
            if t.is_floating_point():
                t.copy_(torch.arange(t.numel(), dtype=t.dtype).view_as(t) * 2 + start + 10 * i)
            else:
                t.fill_(int(start))


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_tau_one_copies_and_tau_zero_keeps() -> None:
    target, source = _net(0), _net(1)
    before = _state(target)
    ema_update(target, source, tau=0.0)
    for (name, p), q in zip(target.named_parameters(), source.parameters()):
        assert torch.equal(p, before[name]) and not torch.equal(p, q)
    ema_update(target, source, tau=1.0)
    for p, q in zip(target.parameters(), source.parameters()):
        assert torch.equal(p, q)


def test_tau_half_averages_exactly() -> None:
    target, source = _net(0), _net(1)
    _fill(target, 0.0)
    _fill(source, 4.0)
    t0, s0 = _state(target), _state(source)
    ema_update(target, source, tau=0.5, buffers="keep")
    for name, p in target.named_parameters():
        assert torch.equal(p, (t0[name] + s0[name]) / 2)
        assert torch.equal(p, t0[name] + 2)  # concrete: source is target + 4


def test_general_tau_formula() -> None:
    target, source = _net(0), _net(1)
    t0, s0 = _state(target), _state(source)
    ema_update(target, source, tau=0.05)
    for name, p in target.named_parameters():
        torch.testing.assert_close(p, 0.05 * s0[name] + 0.95 * t0[name], rtol=1e-6, atol=1e-7)


def test_buffer_modes() -> None:
    source = _net(1)
    _fill(source, 4.0)
    for mode in ("copy", "ema", "keep"):
        target = _net(0)
        _fill(target, 0.0)
        t0 = _state(target)
        ema_update(target, source, tau=0.5, buffers=mode)
        bn, src_bn = target[1], source[1]
        if mode == "copy":
            assert torch.equal(bn.running_mean, src_bn.running_mean)
            assert torch.equal(bn.running_var, src_bn.running_var)
            assert bn.num_batches_tracked.item() == 4
        elif mode == "ema":
            assert torch.equal(bn.running_mean, (t0["1.running_mean"] + src_bn.running_mean) / 2)
            assert torch.equal(bn.running_var, (t0["1.running_var"] + src_bn.running_var) / 2)
            assert bn.num_batches_tracked.item() == 4  # integer buffers are copied
        else:
            assert torch.equal(bn.running_mean, t0["1.running_mean"])
            assert torch.equal(bn.running_var, t0["1.running_var"])
            assert bn.num_batches_tracked.item() == 0
        # parameters are averaged in every mode
        assert torch.equal(bn.weight, (t0["1.weight"] + src_bn.weight) / 2)


def test_ema_update_validates() -> None:
    target, source = _net(0), _net(1)
    for tau in (-0.1, 1.5):
        with pytest.raises(ValueError, match="tau="):
            ema_update(target, source, tau=tau)
    with pytest.raises(ValueError, match="buffers="):
        ema_update(target, source, tau=0.1, buffers="average")
    with pytest.raises(ValueError, match="differ"):
        ema_update(nn.Linear(4, 3), nn.Sequential(nn.Linear(4, 3)), tau=0.1)
    with pytest.raises(ValueError, match="shape"):
        ema_update(nn.Linear(4, 3), nn.Linear(4, 5), tau=0.1)


def test_ema_update_with_tied_weights() -> None:
    """SAC target critic update where the actor shares the critic's convs."""
    critic, actor = PixelEncoder(3, 84, num_layers=1), PixelEncoder(3, 84, num_layers=1)
    actor.tie_conv_weights_to(critic)
    target = PixelEncoder(3, 84, num_layers=1)
    ema_update(target, critic, tau=1.0)
    assert torch.equal(target.convs[0].weight, actor.convs[0].weight)
    assert target.convs[0].weight is not critic.convs[0].weight


def test_momentum_encoder_is_a_frozen_copy_without_gradients() -> None:
    query = PixelEncoder(3, 84, feature_dim=8)
    key = MomentumEncoder(query)
    assert key.out_dim == 8
    assert all(not p.requires_grad for p in key.parameters())
    for (name, p), q in zip(key.encoder.named_parameters(), query.parameters()):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr(), name
    assert all(k.startswith("encoder.") for k in key.state_dict())

    x = torch.rand(2, 3, 84, 84, requires_grad=True)
    z_q, z_k = query(x), key(x)
    assert torch.equal(z_q, z_k)
    assert not z_k.requires_grad and z_k.grad_fn is None
    (z_q * z_k).sum().backward()
    assert all(p.grad is None for p in key.parameters())
    assert all(p.grad is not None for p in query.parameters())


def test_momentum_encoder_update_moves_towards_query() -> None:
    query = nn.Linear(3, 2)
    key = MomentumEncoder(query)
    k0 = key.encoder.weight.clone()
    with torch.no_grad():
        query.weight.add_(1.0)
    key.update(query, tau=0.001)  # MoCo m = 0.999
    torch.testing.assert_close(key.encoder.weight, k0 + 0.001)
    key.update(query, tau=1.0)
    assert torch.equal(key.encoder.weight, query.weight)
    assert not key.encoder.weight.requires_grad


def test_momentum_encoder_keeps_own_bn_statistics_and_follows_mode() -> None:
    query = _net(0)
    key = MomentumEncoder(query)  # buffers="keep" by default
    parent = nn.ModuleDict({"q": query, "k": key})
    parent.train()
    assert key.training and key.encoder.training
    x = torch.randn(8, 4)
    query(x)
    key(x + 5.0)  # train mode: BN of the key encoder updates its own statistics from keys
    q_mean, k_mean = query[1].running_mean.clone(), key.encoder[1].running_mean.clone()
    assert not torch.allclose(q_mean, k_mean)
    key.update(query, tau=0.5)
    assert torch.equal(key.encoder[1].running_mean, k_mean)  # not copied from the query
    parent.eval()
    assert not key.encoder.training
    copying = MomentumEncoder(query, buffers="copy")
    copying.update(query, tau=0.5)
    assert torch.equal(copying.encoder[1].running_mean, q_mean)
    with pytest.raises(ValueError, match="buffers="):
        MomentumEncoder(query, buffers="sync")
