"""CURL-SAC: soft actor-critic from pixels with a contrastive auxiliary loss (Laskin et al. 2020).

Built from the shared core: :class:`PixelEncoder` (critic's encoder, trained), a
:class:`MomentumEncoder` copy of it (CURL's key encoder, which is also the target critic's
encoder, as in CURL), :func:`ema_update` for the target Q heads, :class:`InfoNCE` (bilinear ``W``
by default, or cosine with a temperature), an optional :class:`KeyQueue` of extra negatives, and
``random_crop`` / ``center_crop``.

One update (``update``), in CURL's order:

1. critic: ``Q(enc(crop_a(obs)), a)`` against ``r + gamma * not_done * (min Q_target(key_enc(
   crop(next_obs)), a') - alpha log pi(a'))``; updates the encoder and the Q heads.
2. every ``actor_update_freq`` updates: actor and temperature on *detached* conv features
   (the actor's convolutions are the critic's; the actor trains its own head and MLP).
3. every ``target_update_freq`` updates: Q heads EMA (``critic_tau``), key encoder EMA
   (``encoder_tau``; plus the key projection when ``curl_latent_dim`` is set).
4. every ``curl_update_freq`` updates (never when it is 0: pixel SAC): InfoNCE between
   ``query = proj(enc(crop_a(obs)))`` and ``key = key_proj(key_enc(crop_b(obs)))`` with in-batch
   negatives (+ queue).

Augmentation (``augment``): ``"crop"`` (CURL: random ``crop_size`` crops of the rendered stacks,
centre crop when acting) or ``"shift"`` (DrQ: replicate-pad by ``shift_pad`` pixels and crop back
to the render size; needs ``crop_size`` = render size).

Precision (``amp``): ``"bf16"`` runs the three encoders' conv stacks (nearly all FLOPs) in bf16
autocast; their features, the heads, Q values, targets, log-probs, losses and Adam stay float32.
``"auto"`` is ``"bf16"`` where the device has native bf16 dot products
(:func:`curl_moco.runtime.resolve_amp`).

Optimiser layout (the encoder gets exactly ONE step per loss). CURL's reference code puts the
encoder in three Adam optimisers and steps two of them after the CURL loss, so the encoder moves
twice per CURL loss. Here:

- ``critic_optimizer``: encoder + Q heads. Stepped once after the critic loss.
- ``curl_optimizer``: encoder + ``W`` (+ query projection). Stepped once after the CURL loss.
- ``actor_optimizer``: actor head + MLP (the tied conv weights are *excluded*).
- ``alpha_optimizer``: ``log_alpha`` (Adam betas (alpha_beta, 0.999), CURL: 0.5).

Each optimiser clears the gradients of all its parameters before its loss' backward pass, so no
gradient from one loss leaks into another loss' step. The encoder thus has two Adam moment
estimates (one per loss), each stepped once per update that computes its loss.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from curl_moco.contrastive.augment import (
    STACK_AUGMENTS,
    center_crop,
    random_crop,
    random_shift,
)
from curl_moco.contrastive.encoders import PixelEncoder
from curl_moco.contrastive.losses import InfoNCE
from curl_moco.contrastive.momentum import MomentumEncoder, ema_update
from curl_moco.contrastive.queue import KeyQueue
from curl_moco.rl.networks import Actor, Critic
from curl_moco.rl.replay import ReplayBatch
from curl_moco.runtime import compiled, resolve_amp

if TYPE_CHECKING:
    from curl_moco.rl.config import CurlSacConfig
    from curl_moco.rl.load import LoadedAgent


def weight_seed(seed: int) -> int:
    """The seed of the weight initialisation of an agent of ``seed``: its own stream, distinct
    from the agent's :attr:`~CurlSacAgent.generator` (seeded with ``seed`` itself)."""
    return int(np.random.SeedSequence([int(seed), 0x5EED]).generate_state(1)[0])


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop ``module``'s parameters from accumulating gradients (inputs still get
    them): used to evaluate the critic in the actor loss without computing critic gradients."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class CurlSacAgent(nn.Module):
    """CURL-SAC agent. Observations are ``(B, in_channels, H, W)`` uint8 frame stacks rendered at
    ``H >= crop_size``; the networks see ``crop_size`` crops (random in updates, centre when
    acting).

    All randomness of updates and stochastic actions comes from :attr:`generator` (on
    ``device``), seeded by ``seed``.
    """

    def __init__(self, in_channels: int, crop_size: int, action_dim: int, *,
                 feature_dim: int = 50, hidden_dim: int = 1024, num_layers: int = 4,
                 num_filters: int = 32, lr: float = 1e-3, alpha_lr: float = 1e-4,
                 alpha_beta: float = 0.5, init_temperature: float = 0.1,
                 discount: float = 0.99, critic_tau: float = 0.01, encoder_tau: float = 0.05,
                 actor_update_freq: int = 2, target_update_freq: int = 2,
                 curl_update_freq: int = 1, curl_latent_dim: int | None = None,
                 similarity: str = "bilinear", curl_temperature: float = 1.0,
                 queue_size: int = 0, augment: str = "crop", shift_pad: int = 4,
                 encoder_output_activation: str = "none", actor_log_std_min: float = -10.0,
                 actor_log_std_max: float = 2.0, channels_last: bool = True,
                 fused_adam: bool = True, compile_mode: str = "off", amp: str = "off",
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        super().__init__()
        # Settings are checked where the config is validated (curl_moco.rl.config.validate);
        # here only what the parts below do not refuse by themselves.
        if augment not in STACK_AUGMENTS:
            raise ValueError(f"augment={augment!r} is not one of {STACK_AUGMENTS}")
        self.device = torch.device(device)
        self.crop_size = int(crop_size)
        self.action_dim = int(action_dim)
        self.discount = float(discount)
        self.critic_tau, self.encoder_tau = float(critic_tau), float(encoder_tau)
        self.actor_update_freq = int(actor_update_freq)
        self.target_update_freq = int(target_update_freq)
        self.curl_update_freq = int(curl_update_freq)
        self.augment, self.shift_pad = augment, int(shift_pad)
        self.target_entropy = -float(action_dim)
        self.num_updates = 0
        self.reuse_anchor_conv = True  # False recomputes it (tests compare the two)

        def encoder() -> PixelEncoder:
            return PixelEncoder(in_channels, crop_size, feature_dim, num_layers, num_filters,
                                output_activation=encoder_output_activation)

        self.critic = Critic(encoder(), action_dim, hidden_dim)
        actor_encoder = encoder()
        actor_encoder.tie_conv_weights_to(self.critic.encoder)
        self.actor = Actor(actor_encoder, action_dim, hidden_dim, actor_log_std_min,
                           actor_log_std_max)
        self.target_heads = copy.deepcopy(self.critic.heads)
        for p in self.target_heads.parameters():
            p.requires_grad_(False)
        # CURL's key encoder is the target critic's encoder: one EMA copy serves both.
        self.key_encoder = MomentumEncoder(self.critic.encoder)

        latent = feature_dim if not curl_latent_dim else int(curl_latent_dim)
        self.curl_latent_dim = latent
        self.query_projection: nn.Module | None = None
        self.key_projection: MomentumEncoder | None = None
        if curl_latent_dim:
            self.query_projection = nn.Linear(feature_dim, latent)
            self.key_projection = MomentumEncoder(self.query_projection)
        self.info_nce = InfoNCE(latent, similarity=similarity, temperature=curl_temperature)
        self.queue = KeyQueue(latent, queue_size, seed=seed) if queue_size > 0 else None
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_temperature)))
        self.to(self.device)
        self.channels_last, self.fused_adam = bool(channels_last), bool(fused_adam)
        self.compile_mode = compile_mode
        self.amp, self.amp_reason = resolve_amp(amp, self.device)
        for enc in (self.critic.encoder, self.actor.encoder, self.key_encoder.encoder):
            enc.conv_dtype = torch.bfloat16 if self.amp == "bf16" else None
        if self.channels_last:  # NHWC conv weights (and so activations): faster convolutions
            self.to(memory_format=torch.channels_last)
        # the conv stacks hold nearly all of the FLOPs
        for enc in (self.critic.encoder, self.actor.encoder, self.key_encoder.encoder):
            enc.forward_conv = compiled(enc.forward_conv, compile_mode)

        betas = (0.9, 0.999)
        adam = {"fused": True} if self.fused_adam else {}
        tied = {id(p) for p in self.critic.encoder.convs.parameters()}
        actor_params = [p for p in self.actor.parameters() if id(p) not in tied]
        curl_params = list(self.critic.encoder.parameters()) + list(self.info_nce.parameters())
        if self.query_projection is not None:
            curl_params += list(self.query_projection.parameters())
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=betas,
                                                 **adam)
        self.actor_optimizer = torch.optim.Adam(actor_params, lr=lr, betas=betas, **adam)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=alpha_lr,
                                                betas=(alpha_beta, 0.999), **adam)
        self.curl_optimizer = torch.optim.Adam(curl_params, lr=lr, betas=betas, **adam)
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        """The keyword arguments that :meth:`from_config` takes from the config (each is a
        config field of the same name); ``device`` and ``seed`` are resolved by the caller."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params
                     if p.kind is p.KEYWORD_ONLY and p.name not in ("device", "seed"))

    @classmethod
    def from_config(cls, cfg: CurlSacConfig, in_channels: int, action_dim: int, *,
                    device: torch.device | str | None = None,
                    seed: int | None = None) -> CurlSacAgent:
        """The agent a :class:`~curl_moco.rl.config.CurlSacConfig` describes, for
        ``(B, in_channels, H, W)`` frame stacks and ``action_dim`` actions.

        ``cfg`` is checked and resolved first by :func:`curl_moco.rl.config.validate` (the
        command line's checks; a bad setting raises its :class:`UsageError`). ``device`` None
        means ``cfg.device``; ``seed`` None means ``cfg.seed``. The weights are initialised from
        ``seed`` alone (same seed, same weights, whatever the global RNG's state, which is left
        untouched); the agent's :attr:`generator` is seeded from it too. A new agent knob is a
        keyword argument here and a config field of the same name: nothing else to edit."""
        from curl_moco.io.errors import usage_errors
        from curl_moco.rl.config import validate
        from curl_moco.runtime import resolve_device

        with usage_errors():
            cfg = validate(cfg, for_training=False)
        if in_channels != 3 * cfg.frame_stack:
            raise ValueError(f"in_channels={in_channels} does not match frame_stack="
                             f"{cfg.frame_stack} (3 x frame_stack RGB channels)")
        device = resolve_device(cfg.device) if device is None else torch.device(device)
        seed = cfg.seed if seed is None else int(seed)
        knobs = {name: getattr(cfg, name) for name in cls.knob_names()}
        with torch.random.fork_rng(devices=[]):  # the weights are made on the CPU, then moved
            torch.manual_seed(weight_seed(seed))
            return cls(in_channels, cfg.crop_size, action_dim, **knobs, device=device,
                       seed=seed)

    @classmethod
    def load(cls, run_dir_or_checkpoint: str | os.PathLike,
             device: torch.device | str = "auto") -> LoadedAgent:
        """``agent, cfg, make_env = CurlSacAgent.load(run_dir)``: the trained agent of a run
        folder (or checkpoint file) on ``device``, its config, and a factory of matching
        environments; see :func:`curl_moco.rl.load.load_agent`."""
        from curl_moco.rl.load import load_agent

        return load_agent(run_dir_or_checkpoint, device=device)

    # ------------------------------------------------------------------ properties
    @property
    def alpha(self) -> torch.Tensor:
        """SAC temperature ``exp(log_alpha)`` (scalar tensor, differentiable)."""
        return self.log_alpha.exp()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_optimizer, "actor": self.actor_optimizer,
                "alpha": self.alpha_optimizer, "curl": self.curl_optimizer}

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        """``obs (3k, H, W)`` uint8 -> action ``(A,)`` float32 in [-1, 1] from the centre crop;
        ``deterministic`` uses the mean action (evaluation), otherwise a sample."""
        x = torch.as_tensor(np.asarray(obs), device=self.device).unsqueeze(0)
        x = center_crop(x, self.crop_size)
        action, _, _ = self.actor(x, deterministic=deterministic, generator=self.generator)
        return action[0].float().cpu().numpy()

    # ------------------------------------------------------------------ learning
    def update(self, batch: ReplayBatch, every_part: bool = False) -> dict[str, torch.Tensor]:
        """One CURL-SAC update from a replay batch (``(B, 3k, H, W)`` uint8 stacks). Returns
        detached scalar metrics (tensors on the device; no host synchronisation here).
        Actor, temperature and targets update every ``actor_update_freq`` /
        ``target_update_freq`` updates, or in this one with ``every_part`` (SAC+AE's burst of
        updates after seeding, whose schedule reads a step counter that stands still).

        When the actor and CURL both update, the anchor's conv features are computed once
        (after the critic step) and serve both: the actor detached, CURL with gradients. Neither
        the actor nor the EMA step changes the encoder, so this equals computing them twice."""
        actor_due = every_part or self.num_updates % self.actor_update_freq == 0
        curl_due = (self.curl_update_freq > 0
                    and self.num_updates % self.curl_update_freq == 0)
        obs = self.augmented(batch.obs)
        next_obs = self.augmented(batch.next_obs)
        metrics = self.update_critic(obs, batch.action, batch.reward, next_obs, batch.not_done)
        anchor_conv = (self.critic.encoder.forward_conv(obs)
                       if actor_due and curl_due and self.reuse_anchor_conv else None)
        if actor_due:
            metrics.update(self.update_actor_and_alpha(
                obs, None if anchor_conv is None else anchor_conv.detach()))
        if every_part or self.num_updates % self.target_update_freq == 0:
            self.update_targets()
        if curl_due:
            positive = self.augmented(batch.obs)
            metrics.update(self.update_curl(obs, positive, anchor_conv))
        self.num_updates += 1
        return metrics

    def augmented(self, stacks: torch.Tensor) -> torch.Tensor:
        """A random view of ``stacks (B, 3k, H, W)`` uint8 for the networks: a ``crop_size``
        crop (CURL) or a ``shift_pad`` shift (DrQ), drawn from :attr:`generator`."""
        if self.augment == "shift":
            return random_shift(stacks, self.shift_pad, generator=self.generator)
        return random_crop(stacks, self.crop_size, generator=self.generator)

    def update_critic(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                      next_obs: torch.Tensor, not_done: torch.Tensor) -> dict[str, torch.Tensor]:
        """Soft Bellman regression of both Q heads; one step of ``critic_optimizer``.
        ``obs, next_obs (B, 3k, S, S)`` crops; ``action (B, A)``; ``reward, not_done (B, 1)``."""
        with torch.no_grad():
            next_action, next_log_prob, _ = self.actor(next_obs, generator=self.generator)
            tq1, tq2 = self.target_heads(self.key_encoder(next_obs), next_action)
            target_v = torch.min(tq1, tq2) - self.alpha * next_log_prob
            target_q = reward + not_done * self.discount * target_v
        q1, q2 = self.critic(obs, action)
        loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        return {"critic_loss": loss.detach(), "q1": q1.detach().mean(),
                "target_q": target_q.mean()}

    def update_actor_and_alpha(self, obs: torch.Tensor, conv: torch.Tensor | None = None
                               ) -> dict[str, torch.Tensor]:
        """Policy and temperature losses on detached conv features of ``obs (B, 3k, S, S)``
        (``conv (B, conv_out_dim)`` when already computed at the current weights)."""
        with torch.no_grad():
            if conv is None:
                conv = self.critic.encoder.forward_conv(obs)  # == the actor's convs (tied)
            critic_features = self.critic.encoder.head(conv)
        action, log_prob, log_std = self.actor.from_conv(conv, generator=self.generator)
        with frozen(self.critic.heads):
            q1, q2 = self.critic.heads(critic_features, action)
        actor_loss = (self.alpha.detach() * log_prob - torch.min(q1, q2)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()

        alpha_loss = (self.alpha * (-log_prob - self.target_entropy).detach()).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()
        return {"actor_loss": actor_loss.detach(), "alpha_loss": alpha_loss.detach(),
                "alpha": self.alpha.detach(), "entropy": -log_prob.detach().mean(),
                "log_std": log_std.detach().mean()}

    @torch.no_grad()
    def update_targets(self) -> None:
        """EMA of the target Q heads (critic_tau) and key encoder/projection (encoder_tau)."""
        ema_update(self.target_heads, self.critic.heads, self.critic_tau)
        self.key_encoder.update(self.critic.encoder, self.encoder_tau)
        if self.key_projection is not None:
            self.key_projection.update(self.query_projection, self.encoder_tau)

    def curl_embeddings(self, anchor: torch.Tensor, positive: torch.Tensor,
                        anchor_conv: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query (B, D)`` with gradients and detached ``key (B, D)`` for two crops
        (``anchor_conv``: the anchor's conv features at the current weights, if computed)."""
        if anchor_conv is None:
            anchor_conv = self.critic.encoder.forward_conv(anchor)
        query = self.critic.encoder.head(anchor_conv)
        key = self.key_encoder(positive)
        if self.query_projection is not None:
            query = self.query_projection(query)
            key = self.key_projection(key)
        return query, key

    def update_curl(self, anchor: torch.Tensor, positive: torch.Tensor,
                    anchor_conv: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """InfoNCE between two crops of the same observations; one step of ``curl_optimizer``
        (encoder, W, projection); then the keys join the queue (if any)."""
        query, key = self.curl_embeddings(anchor, positive, anchor_conv)
        negatives = self.queue.negatives() if self.queue is not None else None
        out = self.info_nce(query, key, negatives)
        self.curl_optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.curl_optimizer.step()
        if self.queue is not None:
            self.queue.enqueue(key)
        return {"curl_loss": out.loss.detach(), "curl_accuracy": out.accuracy.detach()}

    # ------------------------------------------------------------------ pretrained encoders
    @torch.no_grad()
    def encoder_loaded(self) -> None:
        """Call after loading weights into ``critic.encoder``: copies its head into the actor's
        encoder (the convolutions are already shared) and resets the key encoder to it."""
        self.actor.encoder.fc.load_state_dict(self.critic.encoder.fc.state_dict())
        self.actor.encoder.ln.load_state_dict(self.critic.encoder.ln.state_dict())
        self.key_encoder.update(self.critic.encoder, 1.0)

    def encoder_arch(self) -> dict[str, Any]:
        """Architecture description matched against an exported encoder's config."""
        enc = self.critic.encoder
        return {"arch": "pixel", "in_channels": enc.in_channels, "image_size": enc.image_size,
                "feature_dim": enc.feature_dim, "num_layers": enc.num_layers,
                "num_filters": enc.num_filters}

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict[str, Any]:
        """Networks, optimisers, generator and update counter (tensors and primitives only;
        a snapshot that later updates do not change)."""
        return {
            "model": {k: v.detach().clone() for k, v in self.state_dict().items()},
            # deep copies: optimiser state dicts reference the live moment tensors
            "optimizers": {name: copy.deepcopy(opt.state_dict())
                           for name, opt in self.optimizers().items()},
            "generator": self.generator.get_state(),
            "num_updates": self.num_updates,
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`checkpoint_state` (strict)."""
        self.load_state_dict(state["model"], strict=True)
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
            for group in opt.param_groups:  # keep this agent's choice, not the saved one
                group["fused"] = True if self.fused_adam else None
        try:
            self.generator.set_state(state["generator"])
        except RuntimeError:  # saved on another device type (CPU <-> CUDA): not resumable
            warnings.warn("agent generator state is from another device type; reseeding it "
                          "(the run continues but will not match an uninterrupted one)",
                          stacklevel=2)
            self.generator.manual_seed(int(state["num_updates"]))
        self.num_updates = int(state["num_updates"])
