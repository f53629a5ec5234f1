"""MoCo's linear-classification protocol on a real image folder (sklearn digits): the backbone
stays frozen and in eval mode, the classifier learns, the sanity check catches a changed
backbone, and the linear_eval CLI runs it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from digits import write_digits_folder
from torch import nn

from curl_moco.pretrain.data import ImageFolderDataset, split_indices
from curl_moco.pretrain.export import arch_config, build_backbone
from curl_moco.pretrain.lincls import (
    LinclsSettings,
    backbone_snapshot,
    check_backbone_unchanged,
    linear_classification,
)

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits_folder(tmp_path_factory.mktemp("digits"), size=32, per_class=30)


@pytest.fixture(scope="module")
def split(digits):
    dataset = ImageFolderDataset(digits, 32)
    train_idx, val_idx = split_indices(dataset, 0.2, 0)
    return dataset, train_idx, val_idx


def test_frozen_resnet_in_eval_mode_and_a_classifier_that_learns(split):
    dataset, train_idx, val_idx = split
    arch = arch_config({"arch": "resnet18", "crop_size": 32, "frame_stack": 1})
    torch.manual_seed(0)
    backbone = build_backbone(arch).train()
    before = backbone_snapshot(backbone)
    modes: list[bool] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _: modes.append(mod.training))
             for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    out = linear_classification(backbone, dataset, train_idx, dataset, val_idx, arch, 10,
                                LinclsSettings(epochs=10, lr=1.0, batch_size=32), CPU)
    for hook in hooks:
        hook.remove()
    assert modes and not any(modes)  # every BatchNorm call used running statistics
    check_backbone_unchanged(backbone, before)  # weights and BN buffers untouched
    assert backbone.training and all(p.requires_grad for p in backbone.parameters())  # restored
    assert out["linear_top1"] > 0.3, out  # 10 classes: chance is 0.1 (measured 0.58)
    assert out["linear_top1"] <= out["linear_top5"] <= 1.0
    assert out["linear_lr"] == 1.0 * 32 / 256 and out["linear_epochs"] == 10


class _DriftingBackbone(nn.Module):
    """A backbone that (wrongly) updates a buffer in every forward, as BN in train mode would."""

    out_dim = 3 * 32 * 32

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x.flatten(1)


def test_sanity_check_catches_a_changed_backbone(split):
    dataset, train_idx, val_idx = split
    arch = {"image_size": 32, "in_channels": 3, "normalize": True}
    with pytest.raises(RuntimeError, match="backbone changed during linear classification: calls"):
        linear_classification(_DriftingBackbone(), dataset, train_idx[:40], dataset, val_idx,
                              arch, 10, LinclsSettings(epochs=1, batch_size=20), CPU)
    with pytest.raises(ValueError, match="lincls_epochs=0"):
        LinclsSettings(epochs=0).check()
    with pytest.raises(ValueError, match="lincls_schedule='linear'"):
        LinclsSettings(schedule="linear").check()


def test_pixel_backbone_is_deterministic(split):
    dataset, train_idx, val_idx = split
    arch = arch_config({"arch": "pixel", "crop_size": 28, "frame_stack": 1, "feature_dim": 16,
                        "pixel_layers": 2, "pixel_filters": 8})
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        backbone = build_backbone(arch)
        results.append(linear_classification(
            backbone, dataset, train_idx, dataset, val_idx, arch, 10,
            LinclsSettings(epochs=3, lr=1.0, batch_size=32, schedule="step", seed=5), CPU))
    assert results[0] == results[1]


def test_linear_eval_cli_protocols(digits):
    from curl_moco.experiments.linear_eval import main as linear_eval

    common = ["--random-init", "--arch", "pixel", "--data", str(digits), "--load-size", "32",
              "--crop-size", "28", "--feature-dim", "16", "--val-fraction", "0.2",
              "--num-workers", "0", "--lincls-epochs", "2", "--lincls-batch-size", "64"]
    linear = linear_eval([*common, "--protocol", "linear"])
    assert linear["protocol"] == "linear" and "knn_accuracy" not in linear
    assert 0.0 <= linear["linear_top1"] <= 1.0 and np.isfinite(linear["linear_train_loss"])
    both = linear_eval([*common, "--protocol", "all"])
    assert both["linear_top1"] == linear["linear_top1"] and "knn_accuracy" in both
    with pytest.raises(ValueError, match="lincls_batch_size=0"):
        linear_eval([*common, "--protocol", "linear", "--lincls-batch-size", "0"])
