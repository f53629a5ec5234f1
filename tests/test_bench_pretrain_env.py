"""Smoke tests of the pretraining-pipeline and environment benchmarks (tiny budgets)."""

from __future__ import annotations

import json

import pytest
import torch

from curl_moco.experiments.bench import bench_env, bench_pretrain

# Tiny tensors: one thread is faster and avoids contention on a busy 2-core CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_torchvision_baseline_transform_makes_normalised_views():
    from PIL import Image

    torch.manual_seed(0)
    image = Image.new("RGB", (40, 40), (200, 30, 90))
    view1, view2 = bench_pretrain.TwoViews(bench_pretrain.torchvision_v2_transform(32))(image)
    assert view1.shape == view2.shape == (3, 32, 32)
    assert view1.dtype == torch.float32
    assert view1.min() < 0  # normalised with the ImageNet mean/std, not in [0, 1]


def test_bench_pretrain_digits_writes_json(tmp_path):
    bench_pretrain.main(["--source", "digits", "--image-size", "40", "--crop-size", "32",
                         "--unique-images", "4", "--num-images", "48", "--batch-size", "8",
                         "--num-workers", "0", "--batches", "2", "--warmup", "1", "--rounds",
                         "1", "--train-steps", "1", "--device", "cpu", "--out-dir",
                         str(tmp_path)])
    data = json.loads((tmp_path / "bench_pretrain.json").read_text())
    assert data["image_folder"]["files"] == 48
    assert data["image_folder"]["unique_images"] == 40  # 4 per digit class
    augment = data["augment"]
    for name in ("baseline", "ours"):
        assert augment[name]["images_per_s"] > 0
        assert augment[name]["batches"] == 2
    assert augment["speedup"] == pytest.approx(
        augment["ours"]["images_per_s"] / augment["baseline"]["images_per_s"])
    training = data["moco_training"]
    assert training["ours"]["images_per_s"] > 0 and training["baseline"]["images_per_s"] > 0
    assert data["goal"]["speedup"] == 1.5


def test_bench_env_one_backend_writes_json(tmp_path):
    import os

    backend = os.environ.get("MUJOCO_GL", "egl")  # chosen by conftest's select_gl_backend
    bench_env.main(["--seconds", "0.5", "--sizes", "32", "--backends", backend, "--out-dir",
                    str(tmp_path)])
    data = json.loads((tmp_path / "bench_env.json").read_text())
    (record,) = data["results"]
    assert record["backend"] == backend and record["image_size"] == 32
    assert record["ours"]["action_repeat"] == 8  # cartpole-swingup, CURL's repeat
    assert record["ours"]["env_steps_per_s"] == pytest.approx(
        8 * record["ours"]["agent_steps_per_s"])
    assert record["speedup"] > 0
