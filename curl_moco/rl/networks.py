"""SAC networks for pixels: tanh-squashed Gaussian actor and twin-Q critic on encoder features.

The encoders are :class:`~curl_moco.contrastive.encoders.PixelEncoder` objects from the shared
core (initialised as CURL does: delta-orthogonal convs, orthogonal linear layers); this module
adds the MLPs, initialised the same way (:func:`curl_init_`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from curl_moco.contrastive.encoders import PixelEncoder, curl_init_


def mlp(in_dim: int, hidden_dim: int, out_dim: int, hidden_layers: int = 2) -> nn.Sequential:
    """``in_dim -> [hidden_dim, ReLU] x hidden_layers -> out_dim``, orthogonal init."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    net = nn.Sequential(*layers)
    curl_init_(net)
    return net


def squash_log_prob(u: torch.Tensor, log_prob_u: torch.Tensor) -> torch.Tensor:
    """``log pi(a)`` for ``a = tanh(u)`` given the Gaussian ``log_prob_u (B, A)`` -> ``(B, 1)``.

    Uses ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``, exact and stable for large |u|.
    """
    correction = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (log_prob_u - correction).sum(dim=-1, keepdim=True)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy ``pi(a | encoder(obs))``.

    ``encoder``'s convolutions are tied to the critic's (see :meth:`PixelEncoder.
    tie_conv_weights_to`) and receive no gradient from the actor: the actor trains only its own
    Linear+LayerNorm head and MLP. ``log_std`` is squashed into ``[log_std_min, log_std_max]``.
    """

    def __init__(self, encoder: PixelEncoder, action_dim: int, hidden_dim: int = 1024,
                 log_std_min: float = -10.0, log_std_max: float = 2.0) -> None:
        super().__init__()  # log_std_min < log_std_max: checked by rl.config.validate
        self.encoder = encoder
        self.action_dim = action_dim
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)
        self.trunk = mlp(encoder.feature_dim, hidden_dim, 2 * action_dim)

    def distribution_params(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features (B, F)`` -> Gaussian ``mu, log_std`` ``(B, A)`` before the tanh."""
        mu, log_std = self.trunk(features).chunk(2, dim=-1)
        log_std = torch.tanh(log_std)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (log_std + 1)
        return mu, log_std

    def from_conv(self, conv: torch.Tensor, *, deterministic: bool = False,
                  generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Conv features ``(B, conv_out_dim)`` (already detached by the caller) ->
        ``action (B, A)`` in (-1, 1), ``log_prob (B, 1)``, ``log_std (B, A)``.

        ``deterministic`` returns ``tanh(mu)`` (and the log-prob of that mean action)."""
        mu, log_std = self.distribution_params(self.encoder.head(conv))
        std = log_std.exp()
        if deterministic:
            u = mu
        else:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            u = mu + noise * std
        normal_log_prob = (-0.5 * ((u - mu) / std).pow(2) - log_std
                           - 0.5 * math.log(2 * math.pi))
        return torch.tanh(u), squash_log_prob(u, normal_log_prob), log_std

    def forward(self, obs: torch.Tensor, *, deterministic: bool = False,
                generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``obs (B, 3k, S, S)`` -> see :meth:`from_conv` (conv features detached)."""
        return self.from_conv(self.encoder.forward_conv(obs).detach(),
                              deterministic=deterministic, generator=generator)


class QHeads(nn.Module):
    """Twin Q functions on features: ``(B, F), (B, A) -> Q1 (B, 1), Q2 (B, 1)``."""

    def __init__(self, feature_dim: int, action_dim: int, hidden_dim: int = 1024) -> None:
        super().__init__()
        self.q1 = mlp(feature_dim + action_dim, hidden_dim, 1)
        self.q2 = mlp(feature_dim + action_dim, hidden_dim, 1)

    def forward(self, features: torch.Tensor, action: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([features, action], dim=-1)
        return self.q1(x), self.q2(x)


class Critic(nn.Module):
    """Pixel encoder + twin Q heads. The encoder is trained by the critic loss (and CURL's)."""

    def __init__(self, encoder: PixelEncoder, action_dim: int, hidden_dim: int = 1024) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = QHeads(encoder.feature_dim, action_dim, hidden_dim)

    def forward(self, obs: torch.Tensor, action: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs (B, 3k, S, S)``, ``action (B, A)`` -> ``Q1, Q2 (B, 1)``."""
        return self.heads(self.encoder(obs), action)
