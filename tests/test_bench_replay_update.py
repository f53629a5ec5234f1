"""Smoke tests of the replay and update benchmarks: tiny budgets, valid JSON, sane values."""

from __future__ import annotations

import json

import pytest
import torch

from experiments.bench import bench_replay, bench_update

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


def test_bench_update_runs_baseline_ours_and_an_option(tmp_path):
    bench_update.main(["--batch-sizes", "4", "--options", "channels_last", "fused_adam",
                       "--repeats", "1", "--warmup", "0", "--capacity", "40", "--image-size",
                       "28", "--crop-size", "24", "--num-layers", "2", "--num-filters", "4",
                       "--hidden-dim", "16", "--feature-dim", "8", "--device", "cpu",
                       "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "bench_update.json").read_text())
    assert {"machine", "command", "settings", "results", "goal"} <= data.keys()
    assert data["goal"]["speedup"] == 1.5  # the CPU goal
    (record,) = data["results"]
    variants = record["variants"]
    for name in ("baseline", "ours", "ours+channels_last", "ours+fused_adam"):
        assert "error" not in variants[name], variants[name]
        assert variants[name]["updates_per_s"] == pytest.approx(
            1 / variants[name]["seconds_per_update"])
    assert variants["baseline"]["speedup_vs_baseline"] == pytest.approx(1.0)
    assert set(record["best_options"]) <= {"channels_last", "fused_adam"}


def test_bench_options_map_onto_the_agent_flags():
    from curl_moco.rl.agent import CurlSacAgent

    assert bench_update.agent_flags(()) == {"channels_last": False, "fused_adam": False,
                                            "compile_mode": "off", "amp": "off"}
    flags = bench_update.agent_flags(("channels_last", "fused_adam", "bf16", "cudagraphs"))
    assert flags == {"channels_last": True, "fused_adam": True,
                     "compile_mode": "reduce-overhead", "amp": "bf16"}
    agent = CurlSacAgent(9, 24, 2, feature_dim=8, hidden_dim=16, num_layers=2, num_filters=4,
                         **bench_update.agent_flags(("channels_last", "fused_adam")))
    conv = agent.critic.encoder.convs[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert agent.actor.encoder.convs[0].weight is conv  # tied weights survive the conversion
    assert all(g["fused"] for o in agent.optimizers().values() for g in o.param_groups)
    with pytest.raises(KeyError, match="unknown options"):
        bench_update.agent_flags(("warp_drive",))


def test_reference_baseline_and_prototype_updates_learn():
    """Both measured update structures really train: finite losses, encoder weights move."""
    from curl_moco.rl.agent import CurlSacAgent
    from curl_moco.rl.replay import ReplayBatch
    from experiments.bench.baselines import ReferenceCurlSac
    from experiments.bench.prototypes import SharedForwardUpdate

    torch.manual_seed(0)
    batch, size, crop = 6, 28, 24
    obs = torch.randint(0, 256, (batch, 9, size, size), dtype=torch.uint8)
    nxt = torch.randint(0, 256, (batch, 9, size, size), dtype=torch.uint8)
    action, reward, not_done = torch.rand(batch, 2) * 2 - 1, torch.rand(batch, 1), torch.ones(
        batch, 1)
    kw = dict(feature_dim=8, hidden_dim=16, num_layers=2, num_filters=4)

    agent = CurlSacAgent(9, crop, 2, **kw)
    before = agent.critic.encoder.convs[0].weight.detach().clone()
    update = SharedForwardUpdate(agent)
    for _ in range(2):
        metrics = update(ReplayBatch(obs, action, reward, nxt, not_done))
    assert all(torch.isfinite(v) for v in metrics.values())
    assert not torch.equal(before, agent.critic.encoder.convs[0].weight)
    assert agent.num_updates == 2

    ref = ReferenceCurlSac(9, crop, 2, **kw)
    before = ref.critic.encoder.convs[0].weight.detach().clone()
    crops = [x[:, :, :crop, :crop].float() for x in (obs, obs, nxt)]
    metrics = ref.update((crops[0], crops[1], action, reward, crops[2], not_done))
    assert {"critic_loss", "actor_loss", "curl_loss"} <= metrics.keys()
    assert all(torch.isfinite(v) for v in metrics.values())
    assert not torch.equal(before, ref.critic.encoder.convs[0].weight)
    # the actor's convolutions are the critic's (tied), as in the reference code
    assert ref.actor.encoder.convs[0].weight is ref.critic.encoder.convs[0].weight


def test_bench_allocator_times_both_modes_in_fresh_processes(tmp_path):
    from experiments.bench import bench_allocator

    bench_allocator.main(["--batch-size", "2", "--updates", "1", "--rounds", "1",
                          "--image-size", "20", "--crop-size", "16", "--hidden-dim", "8",
                          "--num-layers", "1", "--num-filters", "4", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "bench_allocator.json").read_text())
    assert set(data["seconds_per_update"]) == {"default", "kept"}
    assert all(len(v) == 1 and v[0] > 0 for v in data["seconds_per_update"].values())
    assert data["speedup_kept_over_default"] == pytest.approx(
        data["median_seconds_per_update"]["default"] / data["median_seconds_per_update"]["kept"])
