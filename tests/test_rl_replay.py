"""Frame-deduplicated replay buffer: exact agreement with a naive obs/next_obs buffer, memory."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from curl_moco.rl.replay import ReplayBuffer


class NaiveStackBuffer:
    """Reference: stores full obs and next_obs stacks per transition, like CURL's buffer."""

    def __init__(self) -> None:
        self.by_id: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, float, float]] = {}

    def add(self, obs, action, reward, next_obs, not_done, tid: int) -> None:
        self.by_id[tid] = (obs.copy(), action.copy(), reward, next_obs.copy(), not_done)


def stacked(frames: deque) -> np.ndarray:
    return np.concatenate(list(frames), axis=0)


def fill(buffer: ReplayBuffer, naive: NaiveStackBuffer, lengths: list[int], k: int,
         terminate_last: bool = False, seed: int = 0) -> list[int]:
    """Play episodes of the given lengths with random frames, as a frame-stack env would.
    The reward of each transition is its id, so sampled transitions can be looked up."""
    rng = np.random.default_rng(seed)
    tid = 0
    ids = []
    for ep, length in enumerate(lengths):
        frame = rng.integers(0, 256, size=(3, 6, 5), dtype=np.uint8)
        frames = deque([frame] * k, maxlen=k)
        obs = stacked(frames)
        buffer.start_episode(obs)
        for t in range(length):
            action = rng.standard_normal(2).astype(np.float32)
            frames.append(rng.integers(0, 256, size=(3, 6, 5), dtype=np.uint8))
            next_obs = stacked(frames)
            terminated = terminate_last and ep % 2 == 1 and t == length - 1
            buffer.add(action, float(tid), next_obs, terminated)
            naive.add(obs, action, float(tid), next_obs, 0.0 if terminated else 1.0, tid)
            ids.append(tid)
            tid += 1
            obs = next_obs
    return ids


def check_against_naive(buffer: ReplayBuffer, naive: NaiveStackBuffer, batch) -> None:
    for i in range(batch.obs.shape[0]):
        tid = int(batch.reward[i, 0])
        obs, action, reward, next_obs, not_done = naive.by_id[tid]
        assert torch.equal(batch.obs[i], torch.from_numpy(obs)), f"obs of transition {tid}"
        assert torch.equal(batch.next_obs[i], torch.from_numpy(next_obs)), f"next_obs {tid}"
        assert torch.equal(batch.action[i], torch.from_numpy(action))
        assert float(batch.not_done[i, 0]) == not_done


@pytest.mark.parametrize("k", [1, 3, 4])
def test_sampled_stacks_equal_naive_buffer_without_wrap(k: int) -> None:
    buffer = ReplayBuffer(1000, (3, 6, 5), k, action_dim=2, seed=0)
    naive = NaiveStackBuffer()
    ids = fill(buffer, naive, [1, 2, 7, 5, 13], k, terminate_last=True)
    assert len(buffer) == len(ids) == buffer.num_transitions
    batch = buffer.sample(400)
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (400, 3 * k, 6, 5)
    check_against_naive(buffer, naive, batch)
    # every transition is reachable: sampling covers all ids
    seen = {int(r) for r in buffer.sample(3000).reward[:, 0]}
    assert seen == set(ids)


def test_ring_wrap_evicts_oldest_and_keeps_stacks_exact() -> None:
    k, capacity = 3, 37
    buffer = ReplayBuffer(capacity, (3, 6, 5), k, action_dim=2, seed=1)
    naive = NaiveStackBuffer()
    lengths = [9, 4, 11, 1, 6, 15, 8, 3, 10]  # 67 transitions + 9 reset frames > 2 x capacity
    ids = fill(buffer, naive, lengths, k, terminate_last=True)
    # what must still be sampleable: transitions whose k frames (clamped at the episode start)
    # and next frame are among the last `capacity` frames written
    expected = set()
    absolute = 0
    tid = 0
    for length in lengths:
        start = absolute
        absolute += 1  # reset frame
        for _ in range(length):
            a = absolute - 1  # frame the action was taken from
            first = max(a - k + 1, start)
            if first >= buffer.num_frames - capacity:
                expected.add(tid)
            absolute += 1
            tid += 1
    assert buffer.num_frames == absolute
    assert len(buffer) == len(expected)
    assert 0 < len(expected) < len(ids)
    batch = buffer.sample(2000)
    seen = {int(r) for r in batch.reward[:, 0]}
    assert seen == expected  # nothing stale, nothing missing
    check_against_naive(buffer, naive, batch)


def test_memory_is_about_one_sixth_of_obs_next_obs_layout() -> None:
    k, shape, capacity = 3, (3, 100, 100), 1000
    buffer = ReplayBuffer(capacity, shape, k, action_dim=6)
    per_transition = buffer.nbytes / capacity
    naive_per_transition = 2 * k * np.prod(shape)  # obs + next_obs uint8 stacks = 180 KB
    assert naive_per_transition == 180_000
    assert 30_000 <= per_transition < 30_100  # one 30 KB frame + action/reward/flags
    assert per_transition / naive_per_transition == pytest.approx(1 / 6, rel=0.01)


def test_sampling_is_deterministic_and_state_dict_round_trips() -> None:
    def make() -> tuple[ReplayBuffer, NaiveStackBuffer]:
        buffer = ReplayBuffer(50, (3, 6, 5), 3, action_dim=2, seed=7)
        naive = NaiveStackBuffer()
        fill(buffer, naive, [12, 20, 9, 15], 3)
        return buffer, naive

    a, _ = make()
    b, _ = make()
    assert torch.equal(a.sample_indices(64), b.sample_indices(64))
    state = a.state_dict()
    c = ReplayBuffer(50, (3, 6, 5), 3, action_dim=2, seed=123)
    c.load_state_dict(state)
    assert torch.equal(a.sample_indices(64), c.sample_indices(64))
    batch_a, batch_c = a.sample(32), c.sample(32)
    assert torch.equal(batch_a.obs, batch_c.obs) and torch.equal(batch_a.next_obs,
                                                                  batch_c.next_obs)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(60, (3, 6, 5), 3, action_dim=2).load_state_dict(state)


def test_bad_use_is_refused() -> None:
    buffer = ReplayBuffer(10, (3, 6, 5), 3, action_dim=2)
    with pytest.raises(RuntimeError, match="start_episode"):
        buffer.add(np.zeros(2), 0.0, np.zeros((9, 6, 5), np.uint8), False)
    with pytest.raises(RuntimeError, match="no complete transition"):
        buffer.sample(4)
    with pytest.raises(ValueError, match="shape"):
        buffer.start_episode(np.zeros((6, 6, 5), np.uint8))
    with pytest.raises(ValueError, match="replay_capacity"):
        ReplayBuffer(3, (3, 6, 5), 3, action_dim=2)
