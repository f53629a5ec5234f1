"""Frozen-feature evaluation maths and encoder export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from curl_moco.contrastive.encoders import PixelEncoder
from curl_moco.io.checkpoint import CheckpointError
from curl_moco.io.encoder_export import load_encoder_into
from curl_moco.pretrain.evaluate import (
    knn_accuracy,
    knn_predict,
    linear_probe,
    r2_score,
    ridge_r2,
    state_r2_by_class,
)
from curl_moco.pretrain.export import (
    arch_config,
    build_backbone,
    export_backbone,
    export_torchvision,
)

torch.set_num_threads(1)


def test_knn_votes_are_similarity_weighted():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    queries = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn_predict(bank, labels, queries, k=2).tolist() == [0, 1]
    # k = 5: three class-1 votes against two class-0 votes; with a sharp temperature the two
    # very close class-0 neighbours outweigh them, with a flat one the majority wins.
    q = torch.tensor([[1.0, 0.3]])
    assert knn_predict(bank, labels, q, k=5, temperature=0.01).tolist() == [0]
    assert knn_predict(bank, labels, q, k=5, temperature=100.0).tolist() == [1]
    assert knn_accuracy(bank, labels, queries, torch.tensor([0, 0]), k=2) == 0.5
    with pytest.raises(ValueError, match="knn_k"):
        knn_predict(bank, labels, queries, k=0)


def test_linear_probe_separates_and_fails_on_noise():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 10, generator=gen)
    y = (x[:, 3] > 0).long() + 2 * (x[:, 7] > 0).long()  # 4 classes, linearly separable
    assert linear_probe(x[:150], y[:150], x[150:], y[150:], epochs=300, lr=0.05) > 0.85
    noise_y = torch.randint(0, 4, (200,), generator=gen)
    assert linear_probe(x[:150], noise_y[:150], x[150:], noise_y[150:], epochs=300) < 0.45


def test_ridge_r2_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    y = np.stack([x @ rng.normal(size=8), rng.normal(size=300)], axis=1)  # linear, pure noise
    r2, alphas = ridge_r2(torch.tensor(x[:200]), y[:200], torch.tensor(x[200:]), y[200:],
                          alphas=(0.01, 1.0, 1e4))
    assert alphas[0] < alphas[1]  # small penalty for the signal, large for the noise
    per_dim = [r2_score(y[200:, i:i + 1], pred) for i, pred in enumerate(
        [np.full((100, 1), 0.0), np.full((100, 1), y[200:, 1].mean())])]
    assert per_dim[1] == pytest.approx(0.0)
    assert 0.45 < r2 < 0.52  # mean of ~1.0 (signal) and ~0.0 (noise)
    assert r2_score(y, y) == 1.0
    assert r2_score(np.ones((5, 1)), np.zeros((5, 1))) != r2_score(np.ones((5, 1)),
                                                                   np.zeros((5, 1)))  # NaN


def test_state_r2_is_computed_per_class_with_its_own_state_size():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(120, 6)))
    labels = torch.tensor([0] * 60 + [1] * 60)
    targets = np.empty(120, dtype=object)
    for i in range(120):
        targets[i] = (x[i, :2].numpy() * 3 if i < 60 else x[i, 2:5].numpy() - 1)
    tr, te = np.r_[0:45, 60:105], np.r_[45:60, 105:120]
    out = state_r2_by_class(x[tr], labels[tr], targets[tr], x[te], labels[te], targets[te],
                            ["a", "b"], alphas=(0.01, 1.0), train_groups=np.arange(90) // 5)
    assert set(out) == {"a", "b"} and min(out.values()) > 0.99


def test_resnet_export_loads_strict_into_torchvision(tmp_path):
    torch.manual_seed(0)
    arch = arch_config({"arch": "resnet18", "crop_size": 64, "frame_stack": 1})
    backbone = build_backbone(arch).eval()
    path = export_torchvision(backbone, tmp_path / "r18.pth")
    net = torchvision.models.resnet18()
    net.fc = nn.Identity()
    net.load_state_dict(torch.load(path, weights_only=True), strict=True)
    net.eval()
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(net(x), backbone(x), atol=1e-5)
    plain = torchvision.models.resnet18()  # or without fc: only fc.* keys are missing
    missing, unexpected = plain.load_state_dict(torch.load(path, weights_only=True), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []


def test_pixel_export_round_trip_for_the_agent(tmp_path):
    torch.manual_seed(0)
    cfg = {"arch": "pixel", "crop_size": 84, "frame_stack": 3, "feature_dim": 50,
           "pixel_layers": 4, "pixel_filters": 32}
    arch = arch_config(cfg)
    assert arch["in_channels"] == 9 and arch["image_size"] == 84 and not arch["normalize"]
    source = build_backbone(arch)
    export_backbone(source, arch, tmp_path / "enc.pt")
    target = PixelEncoder(9, 84, 50)
    load_encoder_into(target, tmp_path / "enc.pt",
                      {"arch": "pixel", "in_channels": 9, "image_size": 84, "feature_dim": 50})
    x = torch.randint(0, 256, (2, 9, 84, 84), dtype=torch.uint8)
    assert torch.equal(target(x), source(x))
    with pytest.raises(CheckpointError, match="in_channels=9; this model needs in_channels=3"):
        load_encoder_into(PixelEncoder(3, 84, 50), tmp_path / "enc.pt", {"in_channels": 3})
    with pytest.raises(ValueError, match="not a torchvision ResNet"):
        export_torchvision(source, tmp_path / "x.pth")
