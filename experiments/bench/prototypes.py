"""Prototype update structures, measured only to size possible changes to the library's agent.

Nothing in the library uses these. They CHANGE the update (not only its speed), so they are
reported as separate "prototype" rows, never as the library's figures.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from curl_moco.contrastive.augment import random_crop


class SharedForwardUpdate:
    """CURL-SAC update with one encoder forward and one backward for critic + CURL losses.

    Differences from ``CurlSacAgent.update`` (whose modules it uses):

    - the critic loss and the CURL loss share one forward of the encoder on the anchor crop and
      one backward of their sum; one Adam (encoder + Q heads + W [+ projection]) steps once, so
      the CURL gradient is taken at the pre-critic-step weights and the two losses share Adam
      moments (the agent steps two optimisers, one per loss, sequentially);
    - the actor and alpha (``CurlSacAgent.update_actor_and_alpha``) use the detached conv
      features of that forward (pre-step weights);
    - the key encoder encodes ``next_obs`` and the positive crop in one batched call.

    Encoder passes per two updates: 8 forwards and 2 backwards (the agent: 10 and 4).
    """

    def __init__(self, agent: Any) -> None:
        if agent.queue is not None:
            raise ValueError("the prototype does not support queue_size > 0")
        self.agent = agent
        params = list(agent.critic.parameters()) + list(agent.info_nce.parameters())
        if agent.query_projection is not None:
            params += list(agent.query_projection.parameters())
        group = agent.critic_optimizer.param_groups[0]
        self.optimizer = torch.optim.Adam(params, lr=group["lr"], betas=group["betas"])

    def __call__(self, batch: Any) -> dict[str, torch.Tensor]:
        a, g = self.agent, self.agent.generator
        obs = random_crop(batch.obs, a.crop_size, generator=g)
        next_obs = random_crop(batch.next_obs, a.crop_size, generator=g)
        positive = random_crop(batch.obs, a.crop_size, generator=g)
        b = obs.shape[0]
        with torch.no_grad():
            next_action, next_log_prob, _ = a.actor(next_obs, generator=g)
            target_features = a.key_encoder(torch.cat([next_obs, positive]))
            tq1, tq2 = a.target_heads(target_features[:b], next_action)
            target_v = torch.min(tq1, tq2) - a.alpha * next_log_prob
            target_q = batch.reward + batch.not_done * a.discount * target_v
            key = target_features[b:]
            if a.key_projection is not None:
                key = a.key_projection(key)
        conv = a.critic.encoder.forward_conv(obs)
        features = a.critic.encoder.head(conv)
        q1, q2 = a.critic.heads(features, batch.action)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        query = features if a.query_projection is None else a.query_projection(features)
        curl = a.info_nce(query, key)
        self.optimizer.zero_grad(set_to_none=True)
        (critic_loss + curl.loss).backward()
        self.optimizer.step()
        metrics = {"critic_loss": critic_loss.detach(), "curl_loss": curl.loss.detach()}
        if a.num_updates % a.actor_update_freq == 0:  # the agent's own actor + alpha step
            metrics.update(a.update_actor_and_alpha(obs, conv.detach()))
        if a.num_updates % a.target_update_freq == 0:
            a.update_targets()
        a.num_updates += 1
        return metrics
