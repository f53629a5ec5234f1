"""The device-dependent parts, once per device (the ``device`` fixture: cpu, and cuda where a GPU
is visible; ``pytest -m cuda`` runs the cuda ones, as scripts/gpu_check.sh does).

Each check compares what runs on the device with an independent reference: a formula evaluated
in float64 on the CPU, or the same module copied to the CPU in float64. On the CPU the checks
are the float32 code against that reference; on a GPU they also catch device bugs (a tensor
left on the host, a generator on the wrong device, kernels that differ).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curl_moco.contrastive.augment import center_crop, random_crop, random_shift, resized_crop
from curl_moco.contrastive.encoders import make_backbone
from curl_moco.contrastive.losses import info_nce
from curl_moco.contrastive.momentum import MomentumEncoder, ema_update
from curl_moco.contrastive.queue import KeyQueue
from curl_moco.pretrain.moco import MoCo
from curl_moco.rl.agent import CurlSacAgent
from curl_moco.rl.replay import ReplayBatch, ReplayBuffer

pytestmark = pytest.mark.usefixtures("one_thread")


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu", torch.float64)


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((_f64(got) - _f64(want)).abs().max() / _f64(want).abs().max().clamp_min(1e-12))


# ------------------------------------------------------------------ InfoNCE
@pytest.mark.parametrize("similarity", ["bilinear", "cosine"])
def test_info_nce_loss_and_gradient_match_the_formula(device: torch.device,
                                                      similarity: str) -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    negatives, w = torch.randn(16, 6, generator=g), torch.randn(6, 6, generator=g)
    temperature = 1.0 if similarity == "bilinear" else 0.2
    query = q.to(device).requires_grad_(True)
    out = info_nce(query, k.to(device), None if similarity == "bilinear" else negatives.to(device),
                   similarity=similarity, temperature=temperature,
                   weight=w.to(device) if similarity == "bilinear" else None)
    out.loss.backward()
    assert out.loss.device.type == device.type and out.logits.device.type == device.type

    q64 = _f64(q).requires_grad_(True)
    if similarity == "bilinear":  # CURL: q^T W k over the batch, positive on the diagonal
        logits = q64 @ _f64(w) @ _f64(k).t()
    else:  # MoCo: cosine to the batch's keys and the queue, divided by T
        qn, kn, nn_ = (F.normalize(t, dim=1) for t in (q64, _f64(k), _f64(negatives)))
        logits = torch.cat([qn @ kn.t(), qn @ nn_.t()], dim=1) / temperature
    labels = torch.arange(8)
    expected = (torch.logsumexp(logits, dim=1) - logits[labels, labels]).mean()
    expected.backward()
    assert float(out.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-4)
    assert float(out.accuracy) == float((logits.argmax(1) == labels).double().mean())
    assert _relative_error(query.grad, q64.grad) < 1e-4


# ------------------------------------------------------------------ momentum encoder, queue
def test_momentum_encoder_and_ema_follow_the_formula(device: torch.device) -> None:
    torch.manual_seed(0)
    query = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)).to(device)
    key = MomentumEncoder(query)
    with torch.no_grad():
        for p in query.parameters():
            p.add_(torch.randn_like(p))
        query(torch.randn(6, 5, device=device))  # train mode: new BN running statistics
    k_before = [_f64(p) for p in key.parameters()]
    key.update(query, tau=0.3)
    for kb, q, k in zip(k_before, query.parameters(), key.parameters()):
        assert k.device.type == device.type
        torch.testing.assert_close(_f64(k), 0.3 * _f64(q) + 0.7 * kb, rtol=1e-6, atol=1e-6)

    target = copy.deepcopy(query)
    with torch.no_grad():
        query[1].running_mean.add_(1.0)
    mean_before = _f64(target[1].running_mean)
    ema_update(target, query, tau=0.25, buffers="ema")
    torch.testing.assert_close(_f64(target[1].running_mean),
                               0.25 * _f64(query[1].running_mean) + 0.75 * mean_before,
                               rtol=1e-6, atol=1e-6)


def test_key_queue_wraps_around_on_the_device(device: torch.device) -> None:
    queue = KeyQueue(dim=4, size=6, seed=0).to(device)
    batches = [torch.randn(2, 4, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    for keys in batches:
        queue.enqueue(keys.to(device))
    # four batches of 2 into 6 rows: the 4th overwrote rows 0-1
    expected = F.normalize(torch.cat([batches[3], batches[1], batches[2]]).double(), dim=1)
    torch.testing.assert_close(_f64(queue.keys), expected, rtol=1e-6, atol=1e-6)
    assert queue.ptr.device.type == device.type and int(queue.ptr) == 2
    assert int(queue.num_enqueued) == 8 and queue.is_full
    assert queue.negatives().device.type == device.type


# ------------------------------------------------------------------ augmentations
def test_stack_crops_and_shifts_cut_the_right_windows(device: torch.device) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 9, 20, 20), dtype=torch.uint8, generator=g).to(device)
    gen = torch.Generator(device=device).manual_seed(1)
    crops, offsets = random_crop(x, 16, generator=gen, return_offsets=True)
    assert crops.device.type == device.type and crops.dtype == torch.uint8
    assert int(offsets.min()) >= 0 and int(offsets.max()) <= 4
    for b, (top, left) in enumerate(offsets.tolist()):
        assert torch.equal(crops[b].cpu(), x[b, :, top:top + 16, left:left + 16].cpu())
    assert torch.equal(center_crop(x, 16).cpu(), x[:, :, 2:18, 2:18].cpu())

    shifted = random_shift(x, pad=2, generator=gen)
    padded = F.pad(x.cpu().float(), (2, 2, 2, 2), mode="replicate")
    for b in range(5):
        windows = [padded[b, :, i:i + 20, j:j + 20] for i in range(5) for j in range(5)]
        assert any(torch.equal(shifted[b].cpu().float(), w) for w in windows)


def test_resized_crop_of_the_whole_image_is_the_image_or_its_mirror(device: torch.device
                                                                    ) -> None:
    x = torch.randint(0, 256, (3, 3, 24, 24), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(2)).to(device)
    boxes = torch.tensor([[0.0, 0.0, 24.0, 24.0]]).expand(3, 4)
    flip = torch.tensor([False, True, False])
    out = resized_crop(x, boxes, 24, flip=flip)
    assert out.device.type == device.type and out.dtype == torch.float32
    expected = _f64(x).clone()
    expected[1] = expected[1].flip(-1)
    torch.testing.assert_close(_f64(out), expected, rtol=0, atol=1e-3)


# ------------------------------------------------------------------ replay sampling
def test_replay_batches_land_on_the_device_with_the_right_frames(device: torch.device) -> None:
    k = 3
    replay = ReplayBuffer(64, (3, 4, 4), k, 2, device=device, seed=0)
    replay.start_episode(torch.zeros(3, 4, 4, dtype=torch.uint8))
    for t in range(1, 31):  # frame t holds the value t; reward t; action (t, -t)
        replay.add([t, -t], float(t), torch.full((3, 4, 4), t, dtype=torch.uint8), False)
    absolute = replay.sample_indices(16)
    batch = replay.gather(absolute)
    for field in ("obs", "action", "reward", "next_obs", "not_done"):
        assert getattr(batch, field).device.type == device.type
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (16, 3 * k, 4, 4)
    for b, a in enumerate(absolute.tolist()):
        obs_frames = [max(a - k + 1 + j, 0) for j in range(k)]  # clipped at the episode start
        next_frames = [max(a - k + 2 + j, 0) for j in range(k)]
        assert batch.obs[b, ::3, 0, 0].tolist() == obs_frames
        assert batch.next_obs[b, ::3, 0, 0].tolist() == next_frames
        assert batch.action[b].tolist() == [a + 1, -(a + 1)]
        assert float(batch.reward[b]) == a + 1 and float(batch.not_done[b]) == 1.0


# ------------------------------------------------------------------ encoders
@pytest.mark.parametrize("name, kw, size", [
    ("pixel", dict(feature_dim=16, num_layers=2, num_filters=8), 20),
    ("resnet18", dict(small_input=True), 16),
    ("vit_small", dict(patch_size=16), 32),
])
def test_encoders_on_the_device_match_float64(device: torch.device, name: str, kw: dict,
                                              size: int) -> None:
    torch.manual_seed(0)
    net = make_backbone(name, in_channels=3, image_size=size, **kw).eval()
    reference = copy.deepcopy(net).double()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    # The maths, not the precision mode: no TF32 (cuDNN's default for float32 convolutions;
    # float32 matmuls keep torch's default "highest" precision).
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        got = net.to(device)(x.to(device))
        want = reference(x.double())
    assert got.device.type == device.type and got.shape == want.shape
    # float32 against float64 (cuDNN may pick Winograd or FFT kernels: a looser bound on CUDA)
    assert _relative_error(got, want) < (1e-3 if device.type == "cuda" else 1e-4)
    if name == "pixel":  # uint8 frames are scaled to [0, 1] inside the encoder
        u8 = (x * 255).round().to(torch.uint8).to(device)
        with torch.no_grad():
            torch.testing.assert_close(net(u8), net(u8.float() / 255), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ a MoCo step
def test_moco_step_on_the_device_matches_the_formula(device: torch.device) -> None:
    torch.manual_seed(0)
    backbone = make_backbone("pixel", in_channels=3, image_size=16, feature_dim=16,
                             num_layers=2, num_filters=8)
    model = MoCo(backbone, dim=6, head="mlp", queue_size=16, momentum=0.9,
                 temperature=0.2).to(device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    g = torch.Generator().manual_seed(4)
    x1, x2 = (torch.rand(4, 3, 16, 16, generator=g).to(device) for _ in range(2))
    queue_before = _f64(model.queue.keys)
    out = model(x1, x2)
    with torch.no_grad():  # the key encoder after this forward's EMA step
        q = F.normalize(_f64(model.encoder_q(x1)), dim=1)
        k = F.normalize(_f64(model.encoder_k(x2)), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue_before.t()], dim=1) / 0.2
    expected = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-4)
    torch.testing.assert_close(_f64(model.queue.keys[:4]), k, rtol=1e-5, atol=1e-5)

    key_before = [_f64(p) for p in model.encoder_k.parameters()]
    query_before = [_f64(p) for p in model.encoder_q.parameters()]
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in model.encoder_k.parameters())
    assert all(torch.equal(b, _f64(p)) for b, p in zip(key_before, model.encoder_k.parameters()))
    assert any(not torch.equal(b, _f64(p))
               for b, p in zip(query_before, model.encoder_q.parameters()))


# ------------------------------------------------------------------ a CURL-SAC update
def _batch(device: torch.device, size: int = 16) -> ReplayBatch:
    g = torch.Generator().manual_seed(5)
    frames = F.interpolate(torch.rand(2 * size, 9, 5, 5, generator=g), size=(36, 36),
                           mode="bilinear", align_corners=False)
    frames = (frames * 255).to(torch.uint8).to(device)
    return ReplayBatch(obs=frames[:size], action=(torch.rand(size, 2, generator=g) * 2 - 1)
                       .to(device), reward=torch.rand(size, 1, generator=g).to(device),
                       next_obs=frames[size:], not_done=torch.zeros(size, 1, device=device))


def test_agent_update_on_the_device(device: torch.device) -> None:
    """One update's targets follow their EMAs and the actor keeps the critic's convolutions;
    repeated updates on one batch (no bootstrapping: not_done = 0) fit Q to the rewards."""
    torch.manual_seed(0)
    agent = CurlSacAgent(9, 32, 2, feature_dim=16, hidden_dim=32, num_layers=2, num_filters=8,
                         lr=3e-3, curl_update_freq=0, critic_tau=0.25, encoder_tau=0.5,
                         amp="off", device=device, seed=0)
    batch = _batch(device)
    heads_before = [_f64(p) for p in agent.target_heads.parameters()]
    key_before = [_f64(p) for p in agent.key_encoder.parameters()]
    first = agent.update(batch)  # update 0: critic, actor and alpha, then the EMAs
    assert {"critic_loss", "actor_loss", "alpha"} <= set(first)
    assert all(v.device.type == device.type for v in first.values())
    for before, src, tgt in zip(heads_before, agent.critic.heads.parameters(),
                                agent.target_heads.parameters()):
        torch.testing.assert_close(_f64(tgt), 0.25 * _f64(src) + 0.75 * before, rtol=1e-6,
                                   atol=1e-6)
    for before, src, tgt in zip(key_before, agent.critic.encoder.parameters(),
                                agent.key_encoder.parameters()):
        torch.testing.assert_close(_f64(tgt), 0.5 * _f64(src) + 0.5 * before, rtol=1e-6,
                                   atol=1e-6)
    for a, c in zip(agent.actor.encoder.convs.parameters(),
                    agent.critic.encoder.convs.parameters()):
        assert a is c
    losses = [float(agent.update(batch)["critic_loss"]) for _ in range(30)]
    assert losses[-1] < 0.1 * float(first["critic_loss"])
