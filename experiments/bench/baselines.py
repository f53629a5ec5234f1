"""Benchmark baselines that reproduce the structure and cost of the official CURL code
(stacked replay buffer, CURL's update with its three encoder passes and optimiser layout).

The one kind of algorithm code allowed in ``experiments/`` (DESIGN.md): written here only to be
measured against by ``bench_replay`` and ``bench_update``; nothing in the library uses them, and
they use only the library's public parts (no helpers kept in the library for their sake).
"""

from __future__ import annotations

import numpy as np
import torch


class StackedReplayBaseline:
    """Stores every transition's observation AND next-observation stack (uint8), as the original
    CURL buffer does: ``2 * 3k * H * W`` bytes per transition. Crops per sample with NumPy on the
    CPU, then copies the batch to the device."""

    def __init__(self, obs_shape: tuple[int, int, int], action_dim: int, capacity: int,
                 device: torch.device, seed: int = 0) -> None:
        self.capacity = capacity
        self.device = device
        self.obses = np.empty((capacity, *obs_shape), dtype=np.uint8)
        self.next_obses = np.empty((capacity, *obs_shape), dtype=np.uint8)
        self.actions = np.empty((capacity, action_dim), dtype=np.float32)
        self.rewards = np.empty((capacity, 1), dtype=np.float32)
        self.not_dones = np.empty((capacity, 1), dtype=np.float32)
        self.idx = 0
        self.full = False
        self.rng = np.random.default_rng(seed)

    @property
    def nbytes(self) -> int:
        arrays = (self.obses, self.next_obses, self.actions, self.rewards, self.not_dones)
        return sum(a.nbytes for a in arrays)

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
            done: bool) -> None:
        np.copyto(self.obses[self.idx], obs)
        np.copyto(self.next_obses[self.idx], next_obs)
        np.copyto(self.actions[self.idx], action)
        self.rewards[self.idx] = reward
        self.not_dones[self.idx] = not done
        self.idx = (self.idx + 1) % self.capacity
        self.full = self.full or self.idx == 0

    def sample_cropped(self, batch_size: int, crop: int) -> tuple[torch.Tensor, ...]:
        """Anchor, positive and next-obs crops as float device tensors, as CURL's
        ``sample_cpc``: gather obs and next_obs stacks, copy obs for the positive, three NumPy
        crops, then ``torch.as_tensor(...).float()`` of each crop."""
        high = self.capacity if self.full else self.idx
        idxs = self.rng.integers(0, high, size=batch_size)
        obses = self.obses[idxs]
        next_obses = self.next_obses[idxs]
        positive = obses.copy()
        anchor = _numpy_random_crop(obses, crop, self.rng)
        next_crop = _numpy_random_crop(next_obses, crop, self.rng)
        positive = _numpy_random_crop(positive, crop, self.rng)
        to = self.device
        return (torch.as_tensor(anchor, device=to).float(),
                torch.as_tensor(positive, device=to).float(),
                torch.as_tensor(self.actions[idxs], device=to),
                torch.as_tensor(self.rewards[idxs], device=to),
                torch.as_tensor(next_crop, device=to).float(),
                torch.as_tensor(self.not_dones[idxs], device=to))


def _numpy_random_crop(images: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """CURL's crop of ``(B, C, H, W)`` uint8 images: a (B, H, W, C) view, every ``size``-window
    as a strided view, one window per sample picked by fancy indexing (offsets in
    ``[0, H - size)``, exclusive as in CURL's code) -> ``(B, C, size, size)``."""
    batch, side = images.shape[0], images.shape[-1]
    crop_max = side - size
    images = np.transpose(images, (0, 2, 3, 1))
    rows = rng.integers(0, crop_max, size=batch)
    cols = rng.integers(0, crop_max, size=batch)
    windows = np.lib.stride_tricks.sliding_window_view(images, (1, size, size, 1),
                                                       axis=(0, 1, 2, 3))[..., 0, :, :, 0]
    return windows[np.arange(batch), rows, cols]


class ReferenceCurlSac:
    """CURL-SAC updates structured like the reference code, on the library's own networks.

    Same networks (``curl_moco.rl.networks``: PixelEncoder + Actor + Critic), same losses and
    hyper-parameters as :class:`~curl_moco.rl.agent.CurlSacAgent`; only the update structure
    differs, as in the original implementation:

    - input: float crops with values 0..255 made on the CPU by NumPy (see
      :meth:`StackedReplayBaseline.sample_cropped`), divided by 255 before the encoder;
    - a full target critic (its own EMA encoder + Q heads), which is also CURL's key encoder;
    - actor/alpha update: the actor re-encodes ``obs`` (conv detached) AND the critic re-encodes
      it again to score the policy's action (critic heads get gradients that are thrown away);
    - CURL update: the query encoder re-encodes the anchor; the encoder sits in two optimisers
      (``encoder_optimizer`` and ``cpc_optimizer``) that are both stepped, so it moves twice;
    - the actor optimiser holds all actor parameters, including the conv weights tied to the
      critic's encoder (they get no gradient from the detached features);
    - EMA by a Python loop over parameters.
    """

    def __init__(self, in_channels: int, crop_size: int, action_dim: int, *,
                 feature_dim: int = 50, hidden_dim: int = 1024, num_layers: int = 4,
                 num_filters: int = 32, lr: float = 1e-3, alpha_lr: float = 1e-4,
                 alpha_beta: float = 0.5, init_temperature: float = 0.1, discount: float = 0.99,
                 critic_tau: float = 0.01, encoder_tau: float = 0.05,
                 actor_update_freq: int = 2, target_update_freq: int = 2,
                 curl_update_freq: int = 1, device: torch.device | str = "cpu") -> None:
        import math

        from curl_moco.contrastive.encoders import PixelEncoder
        from curl_moco.rl.networks import Actor, Critic

        self.device = torch.device(device)
        self.discount, self.critic_tau, self.encoder_tau = discount, critic_tau, encoder_tau
        self.actor_update_freq, self.target_update_freq = actor_update_freq, target_update_freq
        self.curl_update_freq = curl_update_freq
        self.target_entropy = -float(action_dim)
        self.num_updates = 0

        def encoder() -> PixelEncoder:
            return PixelEncoder(in_channels, crop_size, feature_dim, num_layers, num_filters)

        self.critic = Critic(encoder(), action_dim, hidden_dim).to(self.device)
        self.critic_target = Critic(encoder(), action_dim, hidden_dim).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        actor_encoder = encoder()
        actor_encoder.tie_conv_weights_to(self.critic.encoder)
        self.actor = Actor(actor_encoder, action_dim, hidden_dim).to(self.device)
        self.W = torch.nn.Parameter(torch.rand(feature_dim, feature_dim, device=self.device))
        self.log_alpha = torch.tensor(math.log(init_temperature), device=self.device,
                                      requires_grad=True)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.log_alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=alpha_lr,
                                                    betas=(alpha_beta, 0.999))
        self.encoder_optimizer = torch.optim.Adam(self.critic.encoder.parameters(), lr=lr)
        # CURL's cpc_optimizer holds the whole CURL module: encoder, target encoder and W.
        self.cpc_optimizer = torch.optim.Adam(
            [*self.critic.encoder.parameters(), *self.critic_target.encoder.parameters(),
             self.W], lr=lr)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def update(self, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """One update from ``StackedReplayBaseline.sample_cropped`` output; detached metrics
        (the reference syncs only every ``log_interval`` updates)."""
        import torch.nn.functional as F

        anchor, positive, action, reward, next_obs, not_done = batch
        obs, next_obs, positive = anchor / 255.0, next_obs / 255.0, positive / 255.0
        metrics: dict[str, torch.Tensor] = {}
        # critic
        with torch.no_grad():
            _, policy_action, log_pi, _ = self._actor_sample(next_obs)
            target_q1, target_q2 = self.critic_target(next_obs, policy_action)
            target_v = torch.min(target_q1, target_q2) - self.alpha.detach() * log_pi
            target_q = reward + not_done * self.discount * target_v
        q1, q2 = self.critic(obs, action)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        metrics["critic_loss"] = critic_loss.detach()
        # actor and alpha: obs encoded again by the actor and again by the critic
        if self.num_updates % self.actor_update_freq == 0:
            _, pi, log_pi, _ = self._actor_sample(obs)
            detached = self.critic.encoder.forward_conv(obs).detach()  # CURL's detach_encoder
            actor_q1, actor_q2 = self.critic.heads(self.critic.encoder.head(detached), pi)
            actor_loss = (self.alpha.detach() * log_pi - torch.min(actor_q1, actor_q2)).mean()
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()
            self.log_alpha_optimizer.zero_grad()
            alpha_loss = (self.alpha * (-log_pi - self.target_entropy).detach()).mean()
            alpha_loss.backward()
            self.log_alpha_optimizer.step()
            metrics["actor_loss"] = actor_loss.detach()
        # targets
        if self.num_updates % self.target_update_freq == 0:
            _soft_update(self.critic.heads, self.critic_target.heads, self.critic_tau)
            _soft_update(self.critic.encoder, self.critic_target.encoder, self.encoder_tau)
        # CURL: the anchor is encoded again; the encoder is stepped by two optimisers
        if self.num_updates % self.curl_update_freq == 0:
            z_a = self.critic.encoder(obs)
            with torch.no_grad():
                z_pos = self.critic_target.encoder(positive)
            logits = z_a @ (self.W @ z_pos.T)
            logits = logits - logits.max(dim=1, keepdim=True).values
            labels = torch.arange(logits.shape[0], device=logits.device)
            curl_loss = F.cross_entropy(logits, labels)
            self.encoder_optimizer.zero_grad()
            self.cpc_optimizer.zero_grad()
            curl_loss.backward()
            self.encoder_optimizer.step()
            self.cpc_optimizer.step()
            metrics["curl_loss"] = curl_loss.detach()
        self.num_updates += 1
        return metrics

    def _actor_sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(mu, pi, log_pi, log_std) like the reference actor; conv features detached."""
        action, log_prob, log_std = self.actor(obs)
        return None, action, log_prob, log_std  # type: ignore[return-value]


def _soft_update(source: torch.nn.Module, target: torch.nn.Module, tau: float) -> None:
    """The reference's per-parameter EMA loop."""
    with torch.no_grad():
        for param, target_param in zip(source.parameters(), target.parameters()):
            target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)
