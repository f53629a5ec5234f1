"""The MoCo module, presets and start-up checks, optimiser and schedules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from curl_moco.contrastive.encoders import make_backbone
from curl_moco.contrastive.losses import info_nce
from curl_moco.experiments.configs.moco import MOCO_PRESETS
from curl_moco.io.config import parse_config
from curl_moco.pretrain.config import MocoConfig, validate
from curl_moco.pretrain.moco import MoCo
from curl_moco.pretrain.optim import LARS, learning_rate, momentum_at

torch.set_num_threads(1)


def _pixel_moco(**kw) -> MoCo:
    torch.manual_seed(0)
    backbone = make_backbone("pixel", in_channels=3, image_size=16, feature_dim=16,
                             num_layers=2, num_filters=8)
    defaults = dict(dim=6, head="mlp", queue_size=16, momentum=0.9, temperature=0.2)
    return MoCo(backbone, **{**defaults, **kw})


def test_loss_matches_the_moco_formula_and_queue_takes_the_keys():
    model = _pixel_moco()
    x1, x2 = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    queue_before = model.queue.keys.clone()
    out = model(x1, x2)
    # Reference: logits [q.k+, q.queue] / T with cosine similarities, positive at column 0.
    q = F.normalize(model.encoder_q(x1), dim=1)
    k = F.normalize(model.encoder_k(x2), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue_before.t()], dim=1) / 0.2
    expected = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert torch.allclose(model.queue.keys[:4], k, atol=1e-6)  # enqueued, normalised
    assert torch.equal(model.queue.keys[4:], queue_before[4:])
    assert int(model.queue.ptr) == 4 and int(model.queue.num_enqueued) == 4


def test_key_encoder_gets_no_gradient_and_moves_only_by_momentum():
    model = _pixel_moco(momentum=0.9)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x1, x2 = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    key_params = [p.detach().clone() for p in model.encoder_k.parameters()]
    out = model(x1, x2)
    opt.zero_grad()
    out.loss.backward()
    assert all(p.grad is None for p in model.encoder_k.parameters())
    opt.step()
    for before, p in zip(key_params, model.encoder_k.parameters()):
        assert torch.equal(before, p)  # backward + step leave the key encoder alone
    q_params = [p.detach().clone() for p in model.encoder_q.parameters()]
    model(x1, x2)  # the next forward first applies k <- m k + (1 - m) q
    for before, q, k in zip(key_params, q_params, model.encoder_k.parameters()):
        assert torch.allclose(k, 0.9 * before + 0.1 * q, atol=1e-6)
    assert any(not torch.equal(b, k) for b, k in zip(key_params, model.encoder_k.parameters()))


def test_tiny_overfit_lowers_the_loss():
    # 32 images in 4 fixed batches of 8; the queue (16) holds the two previous batches' keys,
    # so the negatives are other images and the task is learnable instance discrimination.
    model = _pixel_moco(queue_size=16, momentum=0.9, temperature=0.2)
    torch.manual_seed(1)
    images = torch.rand(32, 3, 16, 16)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(80):
        batch = images[(step % 4) * 8:(step % 4 + 1) * 8]
        out = model(batch + 0.05 * torch.randn_like(batch), batch + 0.05 * torch.randn_like(batch))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    first, last = sum(losses[4:12]) / 8, sum(losses[-8:]) / 8
    assert last < 0.5 * first, (first, last)
    assert out.accuracy.item() == 1.0


def test_v3_symmetric_loss_equals_the_core_loss_and_has_a_predictor():
    model = _pixel_moco(queue_size=0, symmetric=True, head="mlp_bn", predictor_hidden=12,
                        temperature=1.0)
    assert model.queue is None and model.predictor is not None
    x1, x2 = torch.rand(6, 3, 16, 16), torch.rand(6, 3, 16, 16)
    out = model(x1, x2)
    model.train()
    q1, q2 = model.query(x1), model.query(x2)
    k1, k2 = model.encoder_k(x1), model.encoder_k(x2)
    # MoCo v3: 2T [ctr(q1, k2) + ctr(q2, k1)], in-batch cosine InfoNCE (T = 1 here)
    ref = 2.0 * (info_nce(q1, k2, similarity="cosine").loss
                 + info_nce(q2, k1, similarity="cosine").loss)
    assert torch.allclose(out.loss, ref, atol=1e-5)
    out.loss.backward()
    assert model.predictor.net[0].weight.grad is not None
    with pytest.raises(ValueError, match="queue_size=0"):
        _pixel_moco(symmetric=True, queue_size=16)


def test_presets_carry_the_official_defaults_and_every_field_is_overridable():
    v1 = parse_config(MocoConfig, ["--preset", "mocov1"], MOCO_PRESETS)
    assert (v1.head, v1.temperature, v1.queue_size, v1.momentum, v1.lr, v1.weight_decay,
            v1.batch_size, v1.schedule, v1.augment) == (
        "linear", 0.07, 65536, 0.999, 0.03, 1e-4, 256, "step", "v1")
    v2 = parse_config(MocoConfig, ["--preset", "mocov2", "--temperature", "0.5",
                                   "--lr-milestones", "0.5", "--no-shuffle-bn"], MOCO_PRESETS)
    assert (v2.head, v2.temperature, v2.schedule, v2.augment) == ("mlp", 0.5, "cosine", "v2")
    assert v2.lr_milestones == (0.5,) and v2.shuffle_bn is False
    v3 = parse_config(MocoConfig, ["--preset", "mocov3"], MOCO_PRESETS)
    assert (v3.symmetric, v3.queue_size, v3.temperature, v3.optimizer, v3.predictor_hidden,
            v3.momentum_schedule) == (True, 0, 1.0, "lars", 4096, "cosine")
    with pytest.raises(KeyError, match="mocov9"):
        parse_config(MocoConfig, ["--preset", "mocov9"], MOCO_PRESETS)
    # every preset builds a model (tiny overrides keep it fast)
    for name in MOCO_PRESETS:
        cfg = parse_config(MocoConfig, ["--preset", name, "--arch", "pixel", "--crop-size", "16",
                                        "--head-hidden", "8", "--data", "x"], MOCO_PRESETS)
        model = MoCo.from_config(cfg)
        assert model.symmetric == name.startswith("mocov3")


def test_startup_checks_name_the_setting():
    ok = dict(data="d", batch_size=32, queue_size=256, load_size=32, crop_size=28)
    validate(MocoConfig(**ok))
    with pytest.raises(ValueError, match="queue_size=100 must be a multiple of the global batch"):
        validate(MocoConfig(**{**ok, "queue_size": 100}))
    with pytest.raises(ValueError, match="queue_size=256 must be a multiple of the global batch"):
        validate(MocoConfig(**{**ok, "batch_size": 96}), world_size=3)
    with pytest.raises(ValueError, match="batch_size=33"):
        validate(MocoConfig(**{**ok, "batch_size": 33}), world_size=2)
    with pytest.raises(ValueError, match="crop_size=40 is larger than load_size=32"):
        validate(MocoConfig(**{**ok, "crop_size": 40}))
    with pytest.raises(ValueError, match="data is required"):
        validate(MocoConfig(**{**ok, "data": ""}))
    with pytest.raises(ValueError, match="sync_bn"):
        validate(MocoConfig(**ok, sync_bn=True))
    with pytest.raises(ValueError, match="bn_splits=3 must divide the per-rank batch 32"):
        validate(MocoConfig(**ok, bn_splits=3))


def test_schedules():
    lr = lambda s, **kw: learning_rate(s, 100, 1.0, **kw)  # noqa: E731
    assert lr(0, schedule="cosine") == 1.0 and lr(50, schedule="cosine") == pytest.approx(0.5)
    assert lr(100, schedule="cosine") == pytest.approx(0.0)
    assert [lr(s, schedule="step", milestones=(0.6, 0.8)) for s in (59, 60, 80)] == pytest.approx(
        [1.0, 0.1, 0.01])
    assert lr(4, schedule="constant", warmup_steps=10) == pytest.approx(0.5)
    assert momentum_at(0, 100, 0.99, "cosine") == pytest.approx(0.99)
    assert momentum_at(100, 100, 0.99, "cosine") == pytest.approx(1.0)
    assert momentum_at(50, 100, 0.99, "constant") == 0.99


def test_lars_scales_weight_updates_by_the_trust_ratio():
    w = torch.nn.Parameter(torch.full((2, 2), 2.0))  # ||w|| = 4
    b = torch.nn.Parameter(torch.ones(2))
    opt = LARS([w, b], lr=1.0, momentum=0.0, weight_decay=0.0, trust_coefficient=0.1)
    w.grad = torch.full((2, 2), 0.5)  # ||g|| = 1 -> ratio 0.1 * 4 / 1 = 0.4
    b.grad = torch.full((2,), 0.5)
    opt.step()
    assert torch.allclose(w, torch.full((2, 2), 2.0 - 0.4 * 0.5))
    assert torch.allclose(b, torch.full((2,), 0.5))  # biases: plain SGD
    assert math.isclose(w.detach().sum().item(), 7.2, rel_tol=1e-6)


def test_bn_splits_emulates_shuffle_bn_in_one_process():
    model = _pixel_moco(head="mlp_bn", bn_splits=2, shuffle_bn=True)
    model.train()
    x = torch.rand(8, 3, 16, 16)
    torch.manual_seed(7)
    keys = model.key(x)
    torch.manual_seed(7)
    perm = torch.randperm(8)
    shuffled = x[perm]
    expected = torch.cat([model.encoder_k(shuffled[:4]), model.encoder_k(shuffled[4:])])
    assert torch.allclose(keys, expected[torch.argsort(perm)], atol=1e-6)
    # Chunks get their own BatchNorm statistics, so the result differs from one full batch...
    assert not torch.allclose(keys, model.encoder_k(x), atol=1e-4)
    # ...and queries are encoded in contiguous chunks.
    q = model.query(x)
    assert torch.allclose(q, torch.cat([model.encoder_q(x[:4]), model.encoder_q(x[4:])]),
                          atol=1e-6)
    plain = _pixel_moco(head="mlp_bn")  # bn_splits=1 in one process: shuffle BN is a no-op
    torch.manual_seed(7)
    assert torch.allclose(plain.key(x), plain.encoder_k(x), atol=1e-6)
    with pytest.raises(ValueError, match="bn_splits=3"):
        _pixel_moco(head="mlp_bn", bn_splits=3).key(x)
