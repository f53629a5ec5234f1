"""Names that say what they are: every --init-encoder mismatch in one message, torchvision exports
that do not load into the stock model refused (command) or named as such (trainer)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from curl_moco.experiments import export_encoder
from curl_moco.io.checkpoint import CheckpointError, save_checkpoint
from curl_moco.io.encoder_export import load_encoder_into, save_encoder_state
from curl_moco.pretrain.export import (
    arch_config,
    torchvision_differences,
    torchvision_file_name,
)


def test_init_encoder_reports_every_mismatch_at_once(tmp_path):
    path = save_encoder_state(tmp_path / "enc.pt", nn.Linear(2, 2), {
        "arch": "pixel", "in_channels": 3, "image_size": 84, "num_layers": 2,
        "num_filters": 32, "feature_dim": 50})
    expected = {"arch": "pixel", "in_channels": 9, "image_size": 84, "num_layers": 4,
                "num_filters": 16, "feature_dim": 50}
    with pytest.raises(CheckpointError) as caught:
        load_encoder_into(nn.Linear(2, 2), path, expected)
    message = str(caught.value)
    assert ("encoder was pretrained with in_channels=3, num_layers=2, num_filters=32; this "
            "model needs in_channels=9 (pretraining flag --frame-stack (3 channels per frame)), "
            "num_layers=4 (pretraining flag --pixel-layers), num_filters=16 (pretraining flag "
            "--pixel-filters)") in message
    assert "image_size" not in message and "feature_dim" not in message


@pytest.mark.parametrize(("cfg", "name", "differences"), [
    ({"arch": "resnet18", "crop_size": 32}, "backbone_torchvision.pt", 0),
    ({"arch": "resnet18", "crop_size": 32, "small_input": True},
     "backbone_torchvision_small_input.pt", 1),
    ({"arch": "resnet18", "crop_size": 32, "small_input": True, "frame_stack": 3},
     "backbone_torchvision_small_input_9ch.pt", 2),
])
def test_torchvision_file_name_says_when_it_is_not_the_stock_model(cfg, name, differences):
    arch = arch_config(cfg)
    assert torchvision_file_name(arch) == name
    assert len(torchvision_differences(arch)) == differences


def test_stock_resnet_export_loads_into_torchvision(tmp_path):
    """The check's other side: a stock ResNet-18's export strict-loads into resnet18()."""
    import torchvision

    from curl_moco.pretrain.export import build_backbone, export_torchvision

    arch = arch_config({"arch": "resnet18", "crop_size": 32})
    path = export_torchvision(build_backbone(arch), tmp_path / torchvision_file_name(arch))
    model = torchvision.models.resnet18()
    model.fc = nn.Identity()
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)


def test_export_command_refuses_a_small_input_torchvision_export(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "checkpoint.pt", {"model": {}}, kind="moco", config={
        "arch": "resnet18", "crop_size": 32, "small_input": True, "frame_stack": 1})
    out = tmp_path / "r18.pth"
    assert export_encoder.cli(["--checkpoint", str(ckpt), "--out", str(out),
                               "--format", "torchvision"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: format='torchvision': ") and err.count("\n") == 1
    assert "small_input" in err and "--format encoder" in err
    assert not out.exists()


def test_gpu_check_reads_the_unit_named_columns(tmp_path):
    """The GPU check's figures come from the trainers' CSV files under their current names."""
    from curl_moco.experiments.bench.gpu_check import cartpole_figures, moco_figures

    run = tmp_path / "cartpole"
    run.mkdir()
    (run / "train.csv").write_text("env_steps,episode,updates,episode_s,env_steps_per_s\n"
                                   "1000,1,0,4,250\n2000,2,125,5,200\n3000,3,250,2,500\n")
    (run / "eval.csv").write_text("env_steps,episode_reward,episode_reward_std,episodes\n"
                                  "3000,212.5,3.0,10\n")
    figures = cartpole_figures(run)
    assert figures["env_steps"] == 3000 and figures["env_steps_per_s"] == round(3000 / 11, 2)
    assert figures["last_eval"]["step"] == 3000.0
    moco = tmp_path / "moco"
    moco.mkdir()
    (moco / "train.csv").write_text("optimizer_steps,epoch,loss,images_per_s\n2,0.1,5.0,100\n")
    assert moco_figures(moco)["steps"] == 2
