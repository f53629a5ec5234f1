"""Smoke tests of the replay and update benchmarks: tiny budgets, valid JSON, sane values."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from curl_moco.experiments.bench import bench_replay, bench_update

# Tiny tensors: one thread is faster and avoids contention on a busy 2-core CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_replay_writes_json_with_exact_memory_accounting(tmp_path):
    size, k, a, t_len = 40, 3, 2, 100
    bench_replay.main(["--capacity", "150", "--batch-sizes", "4", "--image-size", str(size),
                       "--crop-size", "32", "--frame-stack", str(k), "--action-dim", str(a),
                       "--episode-length", str(t_len), "--repeats", "2", "--out-dir",
                       str(tmp_path)])
    data = json.loads((tmp_path / "bench_replay.json").read_text())
    assert data["benchmark"] == "bench_replay"
    assert {"machine", "command", "memory", "sampling", "goals"} <= data.keys()
    memory = data["memory"]
    # Baseline: obs + next_obs stacks (uint8) + action + reward + not_done (float32).
    assert memory["baseline_bytes_per_transition"] == 2 * 3 * k * size * size + 4 * a + 8
    # Ours per slot: one frame + action, reward, not_done, has_action (bool), episode start
    # (int64); one extra slot per episode for its reset frame.
    slot = 3 * size * size + 4 * a + 4 + 4 + 1 + 8
    assert memory["ours_bytes_per_slot"] == pytest.approx(slot)
    assert memory["ours_bytes_per_transition"] == pytest.approx(slot * (t_len + 1) / t_len)
    assert memory["ratio_ours_over_baseline"] < 1 / 5.5
    assert data["goals"]["memory_ratio_at_most_1_over_5.5"] is True
    (record,) = data["sampling"]
    assert record["batch_size"] == 4
    for name in ("baseline", "ours", "ours_float"):
        assert record[name]["median_s"] > 0 and record[name]["calls"] == 2
    assert record["baseline"]["speedup_vs_baseline"] == pytest.approx(1.0)


SMALL_UPDATE = ["--repeats", "1", "--warmup", "0", "--capacity", "40", "--image-size", "28",
                "--crop-size", "24", "--num-layers", "2", "--num-filters", "4", "--hidden-dim",
                "16", "--feature-dim", "8", "--device", "cpu"]


def test_bench_update_times_baseline_and_our_rows(tmp_path):
    bench_update.main(["--batch-sizes", "4", "--rows", "baseline", "ours-default", "ours-fp32",
                       "ours-bf16-all", "ours-default+cudagraphs", *SMALL_UPDATE,
                       "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "bench_update.json").read_text())
    assert {"machine", "command", "settings", "results", "goal"} <= data.keys()
    assert data["goal"]["speedup_of_ours_default"] == 2.0  # the CPU goal
    assert data["trainer_default_flags"] == bench_update.trainer_flags()
    if not torch.cuda.is_available():
        assert "ours-default+cudagraphs" in data["skipped"]
    (record,) = data["results"]
    rows = record["rows"]
    for name in ("baseline", "ours-default", "ours-fp32", "ours-bf16-all"):
        assert "error" not in rows[name], rows[name]
        assert rows[name]["updates_per_s"] == pytest.approx(
            1 / rows[name]["seconds_per_update"])
    assert rows["baseline"]["speedup_vs_baseline"] == pytest.approx(1.0)
    assert rows["ours-fp32"]["flags"]["amp"] == "off"
    assert "baseline_over_official" not in record  # no official code given


def test_bench_rows_use_the_trainers_default_flags():
    from curl_moco.rl.config import CurlSacConfig

    defaults = CurlSacConfig()
    flags = bench_update.trainer_flags()
    assert flags == {"channels_last": defaults.channels_last, "fused_adam": defaults.fused_adam,
                     "compile_mode": defaults.compile_mode, "amp": defaults.amp}
    assert bench_update.trainer_flags(**bench_update.OUR_VARIANTS["ours-plain"]) == {
        "channels_last": False, "fused_adam": False, "compile_mode": defaults.compile_mode,
        "amp": "off"}


def test_bench_update_compares_with_official_code_when_given(tmp_path, monkeypatch, capsys):
    """A folder without the official code is a clear error; with it, the ratio is reported.
    The official code itself is not part of the project: a stand-in with its interface (an
    agent whose update samples the replay buffer) exercises the plumbing."""
    from curl_moco.experiments.bench.official_curl import OfficialCodeError, locate

    with pytest.raises(OfficialCodeError, match="curl_sac.py"):
        locate(str(tmp_path))
    from curl_moco.io.errors import run_entry_point

    assert run_entry_point(bench_update.main, ["--official-curl", str(tmp_path)],
                           prog="experiments.bench.bench_update") == 2
    err = capsys.readouterr().err
    assert f"error: --official-curl {tmp_path}: no curl_sac.py" in err and "Traceback" not in err
    monkeypatch.delenv("CURL_OFFICIAL_DIR", raising=False)
    assert locate(None) is None
    try:  # the official code's crops need scikit-image; the stand-in below does not
        import skimage.util.shape  # noqa: F401
    except ImportError:
        import types

        for name in ("skimage", "skimage.util", "skimage.util.shape"):
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    official = tmp_path / "curl"
    official.mkdir()
    (official / "utils.py").write_text(
        "import numpy as np\nimport torch\n"
        "class ReplayBuffer:\n"
        "    def __init__(self, obs_shape, action_shape, capacity, batch_size, device, "
        "image_size=84):\n"
        "        self.obses = np.empty((capacity, *obs_shape), np.uint8)\n"
        "        self.next_obses = np.empty((capacity, *obs_shape), np.uint8)\n"
        "        self.actions = np.empty((capacity, *action_shape), np.float32)\n"
        "        self.rewards = np.empty((capacity, 1), np.float32)\n"
        "        self.not_dones = np.empty((capacity, 1), np.float32)\n"
        "        self.batch_size, self.image_size = batch_size, image_size\n")
    (official / "curl_sac.py").write_text(
        "import torch\n"
        "class CurlSacAgent:\n"
        "    def __init__(self, obs_shape, action_shape, device, **kw):\n"
        "        self.updates = 0\n"
        "    def update(self, replay_buffer, L, step):\n"
        "        L.log('train/batch_reward', 0.0, step)\n"
        "        torch.as_tensor(replay_buffer.obses[:replay_buffer.batch_size]).float().sum()\n")
    data = bench_update.main(["--batch-sizes", "4", "--rows", "official", "baseline",
                              "--official-curl", str(official), *SMALL_UPDATE,
                              "--out-dir", str(tmp_path)])
    (record,) = data["results"]
    assert record["rows"]["official"]["median_s"] > 0
    assert record["baseline_over_official"] == pytest.approx(
        record["rows"]["baseline"]["min_s"] / record["rows"]["official"]["min_s"])


def test_reference_baseline_update_learns_with_the_official_crops():
    """The baseline really trains (finite losses, encoder weights move), its actor convolutions
    are the critic's, and its crops are CURL's windows (offsets in [0, H - size))."""
    import numpy as np

    from curl_moco.experiments.bench.baselines import ReferenceCurlSac, _numpy_random_crop

    torch.manual_seed(0)
    batch, size, crop = 6, 28, 24
    obs = torch.randint(0, 256, (batch, 9, size, size), dtype=torch.uint8)
    nxt = torch.randint(0, 256, (batch, 9, size, size), dtype=torch.uint8)
    action, reward, not_done = torch.rand(batch, 2) * 2 - 1, torch.rand(batch, 1), torch.ones(
        batch, 1)
    kw = dict(feature_dim=8, hidden_dim=16, num_layers=2, num_filters=4)
    ref = ReferenceCurlSac(9, crop, 2, **kw)
    before = ref.critic.encoder.convs[0].weight.detach().clone()
    crops = [x[:, :, :crop, :crop].float() for x in (obs, obs, nxt)]
    metrics = ref.update((crops[0], crops[1], action, reward, crops[2], not_done))
    assert {"critic_loss", "actor_loss", "curl_loss"} <= metrics.keys()
    assert all(torch.isfinite(v) for v in metrics.values())
    assert not torch.equal(before, ref.critic.encoder.convs[0].weight)
    assert ref.actor.encoder.convs[0].weight is ref.critic.encoder.convs[0].weight

    images = obs.numpy()
    out = _numpy_random_crop(images, crop, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, size - crop, batch), rng.integers(0, size - crop, batch)
    for b in range(batch):
        assert np.array_equal(out[b], images[b, :, rows[b]:rows[b] + crop, cols[b]:cols[b] + crop])
