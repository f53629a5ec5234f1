"""MoCo under DistributedDataParallel: 2 CPU processes (gloo) launched with torchrun train a few
steps; both ranks must end with identical weights, key encoders and queues.

This file is also the per-rank driver: torchrun runs it as a script (see ``__main__``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

REPO = Path(__file__).resolve().parents[1]


def _configs(data: str, out: str) -> dict[str, dict]:
    # BatchNorm lives in the mlp_bn heads, so shuffle BN and per-rank statistics matter.
    common = dict(data=data, arch="pixel", feature_dim=16, pixel_layers=2, pixel_filters=8,
                  load_size=32, crop_size=28, dim=16, head="mlp_bn", head_hidden=32,
                  batch_size=16, epochs=1, lr=0.1,
                  val_fraction=0.2, num_workers=0, tensorboard=False, progress=False,
                  log_every_steps=1, knn_k=5, device="cpu", seed=5, augment="v2",
                  amp="off")
    return {
        # MoCo v2: queue of keys gathered from both ranks, shuffle BN across ranks.
        "v2": dict(common, run_dir=f"{out}/v2", queue_size=64, temperature=0.2,
                   momentum=0.99, shuffle_bn=True),
        # MoCo v3: symmetric loss, in-batch keys of both ranks, predictor, LARS.
        "v3": dict(common, run_dir=f"{out}/v3", queue_size=0, symmetric=True,
                   predictor_hidden=32, temperature=1.0, momentum=0.99, optimizer="lars",
                   momentum_schedule="cosine", shuffle_bn=False),
        # MoCo v3 with a tiny ViT: official heads, asymmetric views, AdamW, frozen patch layer.
        "v3vit": dict(common, run_dir=f"{out}/v3vit", arch="vit_micro", patch_size=8,
                      crop_size=32, queue_size=0, symmetric=True, head="v3", head_hidden=32,
                      predictor_hidden=32, temperature=0.2, momentum=0.99, optimizer="adamw",
                      lr=1e-3, weight_decay=0.1, momentum_schedule="cosine", shuffle_bn=False,
                      augment="v3"),
    }


def _driver(data: str, out: str) -> None:
    """Run both configurations in this rank and save its final model state."""
    from curl_moco.pretrain.config import MocoConfig
    from curl_moco.pretrain.distributed import cleanup_distributed, init_distributed
    from curl_moco.pretrain.trainer import Trainer

    torch.set_num_threads(1)
    ctx = init_distributed(torch.device("cpu"))
    for name, cfg in _configs(data, out).items():
        run = Trainer(MocoConfig(**cfg), ctx)
        result = run.run()
        torch.save({"state": run.model.state_dict(), "step": result.step,
                    "world": ctx.world_size}, f"{out}/{name}-rank{ctx.rank}.pt")
    cleanup_distributed()


@pytest.mark.slow
def test_two_gloo_ranks_agree(tmp_path):
    from digits import write_digits_folder

    from curl_moco.io.checkpoint import load_checkpoint

    data = write_digits_folder(tmp_path / "digits", size=32, per_class=6)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         __file__, str(data), str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in _configs(str(data), str(tmp_path)):
        r0 = torch.load(tmp_path / f"{name}-rank0.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"{name}-rank1.pt", weights_only=True)
        assert r0["world"] == 2
        steps = r0["step"]
        assert steps == 3  # 48 training items, 8 per rank and step
        for key, value in r0["state"].items():
            if "running_" in key or "num_batches_tracked" in key:
                continue  # BN statistics are per rank (different images)
            assert torch.equal(value, r1["state"][key]), f"{name}: {key} differs between ranks"
        bn = "encoder_q.head.net.1.running_mean"
        assert not torch.equal(r0["state"][bn], r1["state"][bn])  # ranks saw different data
        if name == "v2":
            assert int(r0["state"]["queue.num_enqueued"]) == steps * 16  # keys of both ranks
            assert int(r0["state"]["queue.ptr"]) == (steps * 16) % 64
        ckpt = load_checkpoint(tmp_path / name / "checkpoint.pt", kind="moco")
        assert ckpt["config"]["world_size"] == 2 and len(ckpt["payload"]["ranks"]) == 2
        for key, value in ckpt["payload"]["model"].items():
            assert torch.equal(value, r0["state"][key])  # rank 0 saved its own state
        if name == "v3vit":  # the export strict-loads into torchvision's ViT
            vit = torchvision.models.VisionTransformer(32, 8, 2, 4, 64, 256)
            vit.heads = torch.nn.Identity()
            exported = torch.load(tmp_path / name / "backbone_torchvision.pt", weights_only=True)
            vit.load_state_dict(exported, strict=True)
            prefix = "encoder_q.backbone."
            for key, value in exported.items():
                assert torch.equal(value, r0["state"][prefix + key])


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _driver(sys.argv[1], sys.argv[2])
