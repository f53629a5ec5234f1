"""Replay buffer that stores every rendered frame once and rebuilds frame stacks by index.

CURL's reference buffer keeps an ``obs`` and a ``next_obs`` stack per transition: with 3 frames
of 3x100x100 that is 2 x 90 KB = 180 KB per transition. Only one new 3x100x100 frame (30 KB)
arrives per step, so this buffer keeps one frame per *slot* and rebuilds stacks on sampling.

Layout (``C = capacity`` slots, ring buffer; ``n`` = frames written so far, absolute counter):

- slot ``a % C`` holds frame number ``a`` (``(3, H, W)`` uint8) and, when an action was taken
  from that frame, the transition leaving it: ``action``, ``reward``, ``not_done``;
- ``episode_start[a % C]`` is the absolute number of the first frame of ``a``'s episode;
- an episode of T transitions uses T + 1 slots (its reset frame, then one per step); the slot of
  an episode's last frame has no action and is never sampled.

The observation stack of transition ``a`` is frames ``max(a - k + 1 + j, s)`` for
``j = 0..k-1`` (``s`` = its episode start, so the first frame is repeated at episode start exactly
as a frame-stack wrapper does at reset), and ``next_obs`` is the same with ``a + 1``. Both come from
one gather of ``k + 1`` frames. A slot can be sampled when it has an action, its next frame has
been written, and none of the frames it needs has been overwritten by the ring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class ReplayBatch:
    """A sampled batch on the target device.

    obs, next_obs: ``(B, 3k, H, W)`` uint8; action: ``(B, A)`` float32; reward and not_done:
    ``(B, 1)`` float32 (``not_done`` is 0 only when the episode *terminated*, not at time limits).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    not_done: torch.Tensor


class ReplayBuffer:
    """Frame-deduplicated ring buffer for stacked pixel observations.

    Use :meth:`start_episode` with the reset observation, then :meth:`add` once per step. Stacked
    observations ``(3k, H, W)`` (the newest frame in the last 3 channels) or single frames
    ``(3, H, W)`` are accepted; only the newest frame is stored.

    Args:
        capacity: number of frame slots (about one per transition; each episode also uses one slot
            for its reset frame).
        frame_shape: one frame, ``(channels, H, W)``, e.g. ``(3, 100, 100)``.
        frame_stack: k, number of frames in an observation.
        action_dim: size of the action vector.
        device: where :meth:`sample` puts its tensors (frames are stored on the CPU).
        seed: seed of the buffer's own ``torch.Generator`` used by :meth:`sample`.
    """

    def __init__(self, capacity: int, frame_shape: tuple[int, int, int], frame_stack: int,
                 action_dim: int, device: torch.device | str = "cpu", seed: int = 0) -> None:
        if frame_stack < 1:
            raise ValueError(f"frame_stack={frame_stack} must be >= 1")
        if capacity < frame_stack + 1:
            raise ValueError(f"replay_capacity={capacity} must be at least frame_stack + 1 = "
                             f"{frame_stack + 1}")
        if action_dim < 1:
            raise ValueError(f"action_dim={action_dim} must be >= 1")
        self.capacity = int(capacity)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.frame_channels = self.frame_shape[0]
        self.frame_stack = int(frame_stack)
        self.action_dim = int(action_dim)
        self.device = torch.device(device)
        self.frames = torch.zeros((self.capacity, *self.frame_shape), dtype=torch.uint8)
        self.actions = torch.zeros((self.capacity, self.action_dim), dtype=torch.float32)
        self.rewards = torch.zeros((self.capacity,), dtype=torch.float32)
        self.not_dones = torch.zeros((self.capacity,), dtype=torch.float32)
        self.has_action = torch.zeros((self.capacity,), dtype=torch.bool)
        self.episode_start = torch.zeros((self.capacity,), dtype=torch.int64)
        self.num_frames = 0  # absolute count of frames written (n)
        self.num_transitions = 0  # transitions added so far (not capped by capacity)
        self._current_start = -1  # absolute index of the current episode's reset frame
        self._open = False  # an episode is in progress: add() may be called
        self.generator = torch.Generator().manual_seed(int(seed))

    # ------------------------------------------------------------------ writing
    def _newest_frame(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        frame = torch.as_tensor(np.asarray(obs))
        c = self.frame_channels
        expected = (self.frame_stack * c, *self.frame_shape[1:])
        if tuple(frame.shape) not in (expected, self.frame_shape):
            raise ValueError(f"observation shape {tuple(frame.shape)} is neither a frame "
                             f"{self.frame_shape} nor a stack {expected}")
        if frame.dtype != torch.uint8:
            raise ValueError(f"observations must be uint8, got {frame.dtype}")
        return frame[-c:]

    def _write_frame(self, frame: torch.Tensor) -> int:
        a = self.num_frames
        slot = a % self.capacity
        self.frames[slot] = frame
        self.has_action[slot] = False
        self.episode_start[slot] = self._current_start
        self.num_frames += 1
        return slot

    def start_episode(self, obs: np.ndarray | torch.Tensor) -> None:
        """Store the reset observation ``(3k, H, W)`` or frame ``(3, H, W)`` of a new episode."""
        self._current_start = self.num_frames
        self._write_frame(self._newest_frame(obs))
        self._open = True

    def add(self, action: np.ndarray | torch.Tensor, reward: float,
            next_obs: np.ndarray | torch.Tensor, terminated: bool) -> None:
        """Store the step from the newest frame: ``action (A,)``, ``reward``, the new observation
        and whether the episode *terminated* (a time-limit truncation is not a termination)."""
        if not self._open:
            raise RuntimeError("call start_episode(obs) before add()")
        frame = self._newest_frame(next_obs)
        slot = (self.num_frames - 1) % self.capacity
        self.actions[slot] = torch.as_tensor(np.asarray(action, dtype=np.float32))
        self.rewards[slot] = float(reward)
        self.not_dones[slot] = 0.0 if terminated else 1.0
        self._write_frame(frame)
        self.has_action[slot] = True  # set after the write: capacity may equal the episode
        self.num_transitions += 1

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        """Number of transitions that can currently be sampled."""
        return int(self._valid(self._absolute(torch.arange(self.capacity))).sum())

    @property
    def nbytes(self) -> int:
        """Bytes allocated by the buffer's storage tensors (``capacity x`` :meth:`slot_bytes`)."""
        return sum(t.numel() * t.element_size() for t in (
            self.frames, self.actions, self.rewards, self.not_dones, self.has_action,
            self.episode_start))

    @staticmethod
    def slot_bytes(frame_shape: tuple[int, int, int], action_dim: int) -> int:
        """Bytes of storage per slot: one uint8 frame ``(C, H, W)``, a float32 action ``(A,)``,
        float32 reward and not_done, a bool and an int64 episode start (what
        :meth:`__init__` allocates, so that the memory need can be checked before)."""
        channels, height, width = frame_shape
        return channels * height * width + 4 * action_dim + 4 + 4 + 1 + 8

    def _absolute(self, slots: torch.Tensor) -> torch.Tensor:
        """Absolute frame numbers held by ``slots`` (int64); < 0 for never-written slots."""
        n = self.num_frames
        base = n - self.capacity  # oldest absolute number still in the ring (may be < 0)
        return base + (slots - base) % self.capacity

    def _valid(self, absolute: torch.Tensor) -> torch.Tensor:
        """Which absolute transition numbers can be sampled right now (bool, same shape)."""
        n = self.num_frames
        oldest = n - self.capacity
        slots = absolute % self.capacity
        starts = self.episode_start[slots]
        first_needed = torch.maximum(absolute - self.frame_stack + 1, starts)
        return ((absolute >= 0) & (absolute + 1 < n) & self.has_action[slots]
                & (first_needed >= max(oldest, 0)))

    def frame_indices(self, absolute: torch.Tensor) -> torch.Tensor:
        """Slots of the ``k + 1`` frames of transitions ``absolute (B,)`` -> ``(B, k + 1)``:
        columns ``0..k-1`` build ``obs``, ``1..k`` build ``next_obs``."""
        k = self.frame_stack
        starts = self.episode_start[absolute % self.capacity]
        offsets = torch.arange(-k + 1, 2, dtype=torch.int64)
        wanted = torch.maximum(absolute[:, None] + offsets[None, :], starts[:, None])
        return wanted % self.capacity

    def gather(self, absolute: torch.Tensor) -> ReplayBatch:
        """The transitions with absolute numbers ``absolute (B,)`` (must be valid) as a batch."""
        absolute = absolute.to(torch.int64)
        if not bool(self._valid(absolute).all()):
            raise IndexError("gather() was asked for transitions that are not in the buffer")
        b, k, c = absolute.shape[0], self.frame_stack, self.frame_channels
        h, w = self.frame_shape[1:]
        slots = absolute % self.capacity
        idx = self.frame_indices(absolute)
        frames = self.frames.index_select(0, idx.reshape(-1)).view(b, k + 1, c, h, w)
        frames = frames.to(self.device)
        obs = frames[:, :k].reshape(b, k * c, h, w)
        next_obs = frames[:, 1:].reshape(b, k * c, h, w)

        def put(x: torch.Tensor) -> torch.Tensor:
            return x.to(self.device)

        return ReplayBatch(obs=obs, action=put(self.actions[slots]),
                           reward=put(self.rewards[slots, None]), next_obs=next_obs,
                           not_done=put(self.not_dones[slots, None]))

    def sample_indices(self, batch_size: int) -> torch.Tensor:
        """``batch_size`` absolute transition numbers drawn uniformly (with replacement) from the
        sampleable ones, using the buffer's generator. Invalid draws (an episode's last frame,
        the few oldest slots whose stack was overwritten) are redrawn."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        n = self.num_frames
        low = max(n - self.capacity, 0)
        empty = RuntimeError("the replay buffer holds no complete transition yet")
        if n < 2 or self.num_transitions == 0:
            raise empty
        out = torch.empty(batch_size, dtype=torch.int64)
        todo = torch.arange(batch_size)
        rounds = 0
        while todo.numel() > 0:
            rounds += 1  # almost every draw is valid; after many rejections, scan once
            if rounds == 32 and not bool(self._valid(self._absolute(
                    torch.arange(self.capacity))).any()):
                raise empty
            draw = torch.randint(low, n - 1, (todo.numel(),), generator=self.generator)
            ok = self._valid(draw)
            out[todo[ok]] = draw[ok]
            todo = todo[~ok]
        return out

    def sample(self, batch_size: int) -> ReplayBatch:
        """A uniformly sampled batch of ``batch_size`` transitions on :attr:`device`."""
        return self.gather(self.sample_indices(batch_size))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (only the written part of the storage)."""
        used = min(self.num_frames, self.capacity)

        def part(t: torch.Tensor) -> torch.Tensor:  # torch.save would write a view's storage
            return t if used == self.capacity else t[:used].clone()

        return {
            "capacity": self.capacity, "frame_shape": list(self.frame_shape),
            "frame_stack": self.frame_stack, "action_dim": self.action_dim,
            "frames": part(self.frames), "actions": part(self.actions),
            "rewards": part(self.rewards), "not_dones": part(self.not_dones),
            "has_action": part(self.has_action), "episode_start": part(self.episode_start),
            "num_frames": self.num_frames, "num_transitions": self.num_transitions,
            "current_start": self._current_start, "open": self._open,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the layout (capacity, shapes) must match."""
        for key, mine in (("capacity", self.capacity), ("frame_shape", list(self.frame_shape)),
                          ("frame_stack", self.frame_stack), ("action_dim", self.action_dim)):
            theirs = list(state[key]) if isinstance(state[key], (list, tuple)) else state[key]
            if theirs != mine:
                raise ValueError(f"replay state has {key}={theirs!r}, this buffer has {mine!r}")
        used = state["frames"].shape[0]
        for name in ("frames", "actions", "rewards", "not_dones", "has_action", "episode_start"):
            getattr(self, name)[:used] = state[name]
        self.num_frames = int(state["num_frames"])
        self.num_transitions = int(state["num_transitions"])
        self._current_start = int(state["current_start"])
        self._open = bool(state["open"])
        self.generator.set_state(state["generator"])
