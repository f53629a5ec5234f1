"""MoCo v3 as published: the presets build the official heads; the ResNet model equals a
reference written from the paper's code description over several LARS steps; a tiny ViT
pretrains on a real image folder, exports to torchvision and resumes after a crash."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
import torchvision
from digits import write_digits_folder
from layers import layer_signature
from torch import nn

import curl_moco.io.logger as logger_module
from curl_moco.experiments.configs.moco import MOCO_PRESETS
from curl_moco.io.checkpoint import load_checkpoint
from curl_moco.io.config import parse_config
from curl_moco.io.encoder_export import load_encoder_into
from curl_moco.pretrain.config import MocoConfig
from curl_moco.pretrain.moco import MoCo
from curl_moco.pretrain.optim import LARS
from curl_moco.pretrain.trainer import train
from curl_moco.runtime import seed_everything

torch.set_num_threads(1)


_layers = layer_signature


def _preset(name: str, *flags: str) -> MocoConfig:
    return parse_config(MocoConfig, ["--preset", name, "--data", "x", *flags], MOCO_PRESETS)


def test_presets_build_the_official_heads():
    resnet = MoCo.from_config(_preset("mocov3", "--arch", "resnet50"))
    assert _layers(resnet.encoder_q.head.net) == [  # moco-v3 MoCo_ResNet: 2-layer projector
        ("Linear", 2048, 4096, False), ("BN", 4096, True), ("ReLU",),
        ("Linear", 4096, 256, False), ("BN", 256, False)]
    assert _layers(resnet.predictor.net) == [  # 2-layer predictor, no final BN
        ("Linear", 256, 4096, False), ("BN", 4096, True), ("ReLU",),
        ("Linear", 4096, 256, False)]
    vit_cfg = _preset("mocov3_vit")
    assert (vit_cfg.arch, vit_cfg.patch_size, vit_cfg.optimizer, vit_cfg.lr, vit_cfg.weight_decay,
            vit_cfg.warmup_epochs, vit_cfg.momentum, vit_cfg.momentum_schedule,
            vit_cfg.temperature, vit_cfg.augment, vit_cfg.crop_min, vit_cfg.stop_grad_patch,
            vit_cfg.symmetric, vit_cfg.queue_size, vit_cfg.epochs) == (
        "vit_small", 16, "adamw", 1.5e-4, 0.1, 40.0, 0.99, "cosine", 0.2, "v3", 0.08, True,
        True, 0, 300)
    vit = MoCo.from_config(vit_cfg)
    assert _layers(vit.encoder_q.head.net) == [  # MoCo_ViT: 3-layer projector
        ("Linear", 384, 4096, False), ("BN", 4096, True), ("ReLU",),
        ("Linear", 4096, 4096, False), ("BN", 4096, True), ("ReLU",),
        ("Linear", 4096, 256, False), ("BN", 256, False)]
    assert _layers(vit.predictor.net) == [  # the ViT predictor keeps the final BN
        ("Linear", 256, 4096, False), ("BN", 4096, True), ("ReLU",),
        ("Linear", 4096, 256, False), ("BN", 256, False)]
    assert not vit.backbone.conv_proj.weight.requires_grad
    assert not vit.backbone.encoder.pos_embedding.requires_grad
    # --preset mocov3 with a ViT follows the official rule for the arch (head_layers 0 = auto)
    auto = MoCo.from_config(_preset("mocov3", "--arch", "vit_micro", "--crop-size", "32",
                               "--patch-size", "8", "--head-hidden", "8",
                               "--predictor-hidden", "8"))
    assert sum(isinstance(m, nn.Linear) for m in auto.encoder_q.head.net) == 3


# ---------------------------------------------------------------- a reference from the paper
def _published_mlp(in_dim: int, hidden: int, out_dim: int, last_bn: bool) -> nn.Sequential:
    """The 2-layer MLP as moco-v3's builder describes it (bias-free Linears, BN(affine=False)
    at the end when last_bn), written out for this test."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                               nn.ReLU(), nn.Linear(hidden, out_dim, bias=False)]
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


class PublishedMoCoV3ResNet(nn.Module):
    """MoCo v3 for ResNets after the official builder: the base encoder is a torchvision ResNet
    (zero-init residuals) whose ``fc`` is the projector; the momentum encoder a copy whose
    parameters (not buffers) follow ``m * p_m + (1 - m) * p_b`` after the queries are computed;
    loss ``ctr(q1, k2) + ctr(q2, k1)`` with ``ctr = CE(q k^T / T, arange) * 2T`` on
    L2-normalised vectors."""

    def __init__(self, dim: int, mlp_dim: int, temperature: float) -> None:
        super().__init__()
        self.base = torchvision.models.resnet18(zero_init_residual=True)
        self.base.fc = _published_mlp(512, mlp_dim, dim, last_bn=True)
        self.momentum = copy.deepcopy(self.base).requires_grad_(False)
        self.predictor = _published_mlp(dim, mlp_dim, dim, last_bn=False)
        self.temperature = temperature

    def contrastive(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = q @ k.t() / self.temperature
        return F.cross_entropy(logits, torch.arange(q.shape[0])) * 2 * self.temperature

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, m: float) -> torch.Tensor:
        q1, q2 = self.predictor(self.base(x1)), self.predictor(self.base(x2))
        with torch.no_grad():
            for p_b, p_m in zip(self.base.parameters(), self.momentum.parameters()):
                p_m.mul_(m).add_(p_b, alpha=1 - m)
            k1, k2 = self.momentum(x1), self.momentum(x2)
        return self.contrastive(q1, k2) + self.contrastive(q2, k1)


def _to_reference_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renames = (("encoder_q.backbone.", "base."), ("encoder_q.head.net.", "base.fc."),
               ("encoder_k.encoder.backbone.", "momentum."),
               ("encoder_k.encoder.head.net.", "momentum.fc."), ("predictor.net.", "predictor."))
    out = {}
    for key, value in state.items():
        for ours, theirs in renames:
            if key.startswith(ours):
                out[theirs + key[len(ours):]] = value
                break
    return out


def test_v3_resnet_equals_the_published_model_over_lars_steps():
    cfg = _preset("mocov3", "--arch", "resnet18", "--dim", "16", "--head-hidden", "32",
                  "--predictor-hidden", "32", "--crop-size", "32", "--temperature", "0.5")
    torch.manual_seed(0)
    ours = MoCo.from_config(cfg).train()
    reference = PublishedMoCoV3ResNet(16, 32, 0.5).train()
    reference.load_state_dict(_to_reference_keys(ours.state_dict()), strict=True)
    opt_ours = LARS([p for p in ours.parameters() if p.requires_grad], lr=0.5,
                    weight_decay=cfg.weight_decay)
    opt_ref = LARS([p for p in reference.parameters() if p.requires_grad], lr=0.5,
                   weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(1)
    for step, m in enumerate((0.99, 0.995, 0.999)):
        x1, x2 = torch.randn(8, 3, 32, 32, generator=gen), torch.randn(8, 3, 32, 32, generator=gen)
        loss_ours = ours(x1, x2, momentum=m).loss
        loss_ref = reference(x1, x2, m)
        torch.testing.assert_close(loss_ours, loss_ref, rtol=1e-5, atol=1e-6)
        for opt, loss in ((opt_ours, loss_ours), (opt_ref, loss_ref)):
            opt.zero_grad()
            loss.backward()
        if step == 0:
            grads = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
            ref_grads = dict(reference.named_parameters())
            mapped = _to_reference_keys(grads)
            assert len(mapped) == len(grads) > 60  # backbone, projector and predictor
            for key, grad in mapped.items():
                ref = ref_grads[key].grad  # float32 sums in another order: scale-relative atol
                torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
        opt_ours.step()
        opt_ref.step()
    final = _to_reference_keys(ours.state_dict())
    for key, value in reference.state_dict().items():  # weights, key encoder, BN statistics
        torch.testing.assert_close(final[key], value, rtol=1e-4,
                                   atol=1e-5 * max(1.0, float(value.abs().max())), msg=key)
    assert not torch.equal(final["momentum.fc.0.weight"], final["base.fc.0.weight"])


# ---------------------------------------------------------------- tiny ViT end to end
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits_folder(tmp_path_factory.mktemp("digits"), size=32, per_class=10)


def _vit_cfg(data, run_dir, *flags: str) -> MocoConfig:
    return parse_config(MocoConfig, [
        "--preset", "mocov3_vit", "--data", str(data), "--run-dir", str(run_dir),
        "--arch", "vit_micro", "--patch-size", "8", "--load-size", "32", "--crop-size", "32",
        "--dim", "16", "--head-hidden", "32", "--predictor-hidden", "32", "--batch-size", "16",
        "--epochs", "2", "--warmup-epochs", "0.5", "--lr", "1e-3", "--val-fraction", "0.2",
        "--num-workers", "0", "--no-tensorboard", "--no-progress", "--knn-k", "5",
        "--log-every-steps", "1", "--amp", "off",
        "--device", "cpu", "--seed", "4", *flags], MOCO_PRESETS)


def test_tiny_vit_pretrains_exports_and_strict_loads(digits, tmp_path):
    from curl_moco.experiments.linear_eval import main as linear_eval

    cfg = _vit_cfg(digits, tmp_path / "run")
    result = train(cfg)
    run = tmp_path / "run"
    assert result.step == 10 and 0.0 < result.metrics["loss"] < 10  # 81 training items // 16
    ckpt = load_checkpoint(run / "checkpoint.pt", kind="moco")["payload"]["model"]
    prefix = "encoder_q.backbone."
    frozen = ("conv_proj.weight", "conv_proj.bias", "encoder.pos_embedding")
    seed_everything(cfg.seed)
    start = MoCo.from_config(cfg)  # as the trainer seeds it: the initial weights
    for key in frozen:  # never trained (the key encoder's EMA of a constant is that constant)
        assert torch.equal(ckpt[prefix + key], start.state_dict()[prefix + key])
    assert not torch.equal(ckpt[prefix + "class_token"], start.state_dict()[prefix + "class_token"])
    tv = torchvision.models.VisionTransformer(32, 8, 2, 4, 64, 256).eval()
    tv.heads = nn.Identity()
    tv.load_state_dict(torch.load(run / "backbone_torchvision.pt", weights_only=True),
                       strict=True)
    backbone = MoCo.from_config(cfg).backbone.eval()
    load_encoder_into(backbone, run / "encoder.pt",
                      {"arch": "vit_micro", "image_size": 32, "patch_size": 8})
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(tv(x), backbone(x))
    out = linear_eval(["--checkpoint", str(run / "encoder.pt"), "--num-workers", "0"])
    assert out["feature_dim"] == 64 and 0.0 <= out["knn_accuracy"] <= 1.0


class _Crash(Exception):
    pass


def test_vit_run_resumes_after_a_crash(digits, tmp_path, monkeypatch):
    cfg = _vit_cfg(digits, tmp_path / "crashed", "--checkpoint-every-steps", "3")
    original = logger_module.Logger.log

    def log_then_crash(self, group, step, metrics):
        original(self, group, step, metrics)
        if group == "train" and step == 7:
            raise _Crash

    with monkeypatch.context() as patch:
        patch.setattr(logger_module.Logger, "log", log_then_crash)
        with pytest.raises(_Crash):
            train(cfg)
    crashed = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")["payload"]
    assert crashed["step"] == 6
    train(cfg)  # resumes from step 6
    train(replace(cfg, run_dir=str(tmp_path / "straight")))
    resumed = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")["payload"]
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["payload"]
    assert resumed["step"] == straight["step"] == 10
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_vit_startup_checks_name_the_setting():
    from curl_moco.pretrain.config import validate

    ok = dict(data="d", arch="vit_micro", patch_size=8, load_size=32, crop_size=32,
              queue_size=0, batch_size=16)
    validate(MocoConfig(**ok))
    with pytest.raises(ValueError, match="crop_size=28 must be a multiple of patch_size=8"):
        validate(MocoConfig(**{**ok, "crop_size": 28}))
    with pytest.raises(ValueError, match="crop_min=1.0 must be in"):
        validate(MocoConfig(**ok, crop_min=1.0))
    with pytest.raises(ValueError, match="head_layers=-1 must be >= 0"):
        validate(MocoConfig(**ok, head_layers=-1))
