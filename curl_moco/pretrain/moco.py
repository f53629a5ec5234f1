"""MoCo (He et al. 2020; Chen et al. 2020 v2; Chen, Xie & He 2021 v3) from the shared core.

The whole method, built only from :mod:`curl_moco.contrastive` parts::

    query  = predictor(head(backbone(view1)))      # gradients; predictor only in v3
    key    = momentum_copy(head(backbone))(view2)   # EMA of the query encoder, no gradients
    v1/v2: loss = InfoNCE(query, key, negatives=queue), positive in column 0; enqueue(key)
    v3:    loss = 2T * [InfoNCE(q1, k2) + InfoNCE(q2, k1)], in-batch keys, no queue

Similarities are cosine divided by the temperature T. Keys come from the momentum encoder,
updated (tau = 1 - m) at the start of every forward, before keys are computed, as in MoCo.
Under DDP, keys are gathered from all ranks before they are enqueued (:class:`KeyQueue`), v3's
in-batch negatives include the other ranks' keys, and the key encoder runs with shuffle BN
(a no-op in a single process unless ``bn_splits`` emulates several ranks; see
:func:`~curl_moco.pretrain.distributed.shuffled_forward`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from curl_moco.contrastive.encoders import ProjectionHead, is_vit
from curl_moco.contrastive.losses import info_nce
from curl_moco.contrastive.momentum import MomentumEncoder
from curl_moco.contrastive.queue import KeyQueue, gather_from_all_ranks
from curl_moco.io.config import config_to_dict
from curl_moco.pretrain.distributed import rank, shuffled_forward, world_size
from curl_moco.pretrain.export import arch_config, build_backbone

if TYPE_CHECKING:
    from curl_moco.pretrain.config import MocoConfig


class MocoOutput(NamedTuple):
    """``loss`` scalar; ``accuracy`` of the positive (detached, in [0, 1]); ``keys (B, dim)``."""

    loss: torch.Tensor
    accuracy: torch.Tensor
    keys: torch.Tensor


class MoCo(nn.Module):
    """Query encoder (backbone + projection head [+ predictor]), momentum key encoder, queue.

    Args:
        backbone: any module with ``out_dim`` (``make_backbone("resnet18" | "pixel", ...)``).
        dim: size of the contrastive embedding (v1/v2: 128, v3: 256).
        head: projection head kind ``"linear"`` (v1), ``"mlp"`` (v2), ``"v3"`` (MoCo v3's
            official MLPs, see :class:`ProjectionHead`) or ``"mlp_bn"`` (an earlier v3-like head).
        head_hidden: hidden width of an MLP head (default: the backbone's ``out_dim``).
        head_layers: layers of a ``"v3"`` projector (official: 2 for ResNets, 3 for ViTs).
        queue_size: K negatives kept in the queue; 0 = no queue (in-batch negatives, v3).
        momentum: m of the key encoder EMA (tau = 1 - m); can be overridden per call.
        temperature: T dividing the cosine similarities.
        symmetric: v3's symmetrised loss (each view is query once and key once).
        predictor_hidden: > 0 adds v3's predictor MLP of that width after the head: the official
            2-layer ``"v3"`` MLP when ``head="v3"``, else ``"mlp_bn"``.
        predictor_last_bn: the ``"v3"`` predictor ends with a non-affine BatchNorm (official:
            ViTs yes, ResNets no).
        shuffle_bn: shuffle the key batch across ranks for BatchNorm (no-op in one process).
        bn_splits: > 1 emulates that many ranks inside this process (MoCo's single-GPU
            "SplitBatchNorm"): queries are encoded in ``bn_splits`` contiguous chunks and keys in
            chunks of a random permutation, so BatchNorm statistics of a query and of its
            positive key come from different samples, as with shuffle BN across GPUs.
        queue_seed: seed of the queue's random initial keys (identical on every rank).
    """

    def __init__(self, backbone: nn.Module, *, dim: int = 128, head: str = "linear",
                 head_hidden: int | None = None, head_layers: int = 2, queue_size: int = 65536,
                 momentum: float = 0.999, temperature: float = 0.07, symmetric: bool = False,
                 predictor_hidden: int = 0, predictor_last_bn: bool = False,
                 shuffle_bn: bool = True, bn_splits: int = 1,
                 queue_seed: int | None = 0) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum={momentum} must be in [0, 1]")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        if queue_size < 0:
            raise ValueError(f"queue_size={queue_size} must be >= 0 (0 = no queue)")
        if symmetric and queue_size > 0:
            raise ValueError(f"symmetric=True (MoCo v3) uses in-batch keys: set queue_size=0, "
                             f"not {queue_size}")
        self.momentum, self.temperature, self.symmetric = momentum, temperature, symmetric
        if bn_splits < 1:
            raise ValueError(f"bn_splits={bn_splits} must be >= 1")
        self.shuffle_bn, self.bn_splits = shuffle_bn, bn_splits
        self.encoder_q = nn.Sequential(OrderedDict(
            backbone=backbone,
            head=ProjectionHead(backbone.out_dim, dim, head, head_hidden, num_layers=head_layers)))
        self.encoder_k = MomentumEncoder(self.encoder_q)  # own BN statistics, train mode
        self.predictor = (ProjectionHead(dim, dim, "v3" if head == "v3" else "mlp_bn",
                                         predictor_hidden, num_layers=2,
                                         last_bn=predictor_last_bn)
                          if predictor_hidden > 0 else None)
        self.queue = KeyQueue(dim, queue_size, seed=queue_seed) if queue_size > 0 else None

    @classmethod
    def from_config(cls, cfg: MocoConfig, *, device: torch.device | str | None = None,
                    world_size: int | None = None) -> nn.Module:
        """The MoCo module a :class:`~curl_moco.pretrain.config.MocoConfig` describes, on
        ``device`` (None: ``cfg.device``); wrapped in SyncBatchNorm when ``sync_bn`` (the
        official v3 code converts the whole model, heads included).

        ``cfg`` is checked first by :func:`curl_moco.pretrain.config.validate` (the command
        line's checks, for ``world_size`` processes; None: torchrun's ``WORLD_SIZE``). The
        weights are initialised from ``cfg.seed`` alone: same seed, same model, whatever the
        global RNG's state (which is left untouched)."""
        from curl_moco.io.errors import usage_errors
        from curl_moco.pretrain.config import validate
        from curl_moco.runtime import launched_world_size, resolve_device

        with usage_errors():
            validate(cfg, launched_world_size() if world_size is None else world_size,
                     for_training=False)
        device = resolve_device(cfg.device) if device is None else torch.device(device)
        with torch.random.fork_rng(devices=[]):  # built on the CPU, then moved
            torch.manual_seed(cfg.seed)
            model = cls._build(cfg)
        return model.to(device)

    @classmethod
    def _build(cls, cfg: MocoConfig) -> nn.Module:
        arch = dict(arch_config(config_to_dict(cfg)), zero_init_residual=cfg.zero_init_residual,
                    stop_grad_patch=cfg.stop_grad_patch)
        vit = is_vit(cfg.arch)
        model = cls(build_backbone(arch), dim=cfg.dim, head=cfg.head,
                    head_hidden=cfg.head_hidden or None,
                    head_layers=cfg.head_layers or (3 if vit else 2), queue_size=cfg.queue_size,
                    momentum=cfg.momentum, temperature=cfg.temperature,
                    symmetric=cfg.symmetric, predictor_hidden=cfg.predictor_hidden,
                    predictor_last_bn=vit, shuffle_bn=cfg.shuffle_bn, bn_splits=cfg.bn_splits,
                    queue_seed=cfg.seed)
        return nn.SyncBatchNorm.convert_sync_batchnorm(model) if cfg.sync_bn else model

    @property
    def backbone(self) -> nn.Module:
        """The query backbone: what is exported and evaluated after pretraining."""
        return self.encoder_q.backbone

    def _split(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``fn`` on ``bn_splits`` chunks of the batch (own BatchNorm statistics per chunk)."""
        if self.bn_splits == 1:
            return fn(x)
        if x.shape[0] % self.bn_splits:
            raise ValueError(f"batch of {x.shape[0]} is not divisible by "
                             f"bn_splits={self.bn_splits}")
        return torch.cat([fn(chunk) for chunk in x.chunk(self.bn_splits)])

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Views ``(B, C, H, W)`` -> query embeddings ``(B, dim)`` (with gradients)."""
        q = self._split(self.encoder_q, x)
        return self.predictor(q) if self.predictor is not None else q

    def key(self, x: torch.Tensor) -> torch.Tensor:
        """Views ``(B, C, H, W)`` -> key embeddings ``(B, dim)`` (no gradients, shuffle BN)."""
        if self.shuffle_bn and self.bn_splits > 1:  # shuffle within this process
            perm = torch.randperm(x.shape[0], device=x.device)
            keys = self._split(lambda v: shuffled_forward(self.encoder_k, v), x[perm])
            return keys[torch.argsort(perm)]
        if self.shuffle_bn:
            return shuffled_forward(self.encoder_k, x)
        return self._split(self.encoder_k, x)

    def contrast(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE of ``q (B, dim)`` against positives ``k (B, dim)``: the queue as negatives
        (v1/v2), or the batch's keys from every rank (v3). Returns ``(loss, accuracy)``."""
        q, k = q.float(), k.float()
        if self.queue is not None:
            out = info_nce(q, k, self.queue.negatives(), similarity="cosine",
                           temperature=self.temperature, in_batch=False)
            return out.loss, out.accuracy
        others = None
        if world_size() > 1:  # keys of the other ranks are extra in-batch negatives
            everything = gather_from_all_ranks(k).view(world_size(), -1, k.shape[1])
            keep = torch.arange(world_size(), device=k.device) != rank()
            others = everything[keep].flatten(0, 1)
        out = info_nce(q, k, others, similarity="cosine", temperature=self.temperature)
        return out.loss, out.accuracy

    def forward(self, view1: torch.Tensor, view2: torch.Tensor,
                momentum: float | None = None) -> MocoOutput:
        """One MoCo step's loss for two augmented views of the same images ``(B, C, H, W)``.

        Updates the key encoder (EMA with ``momentum``, default ``self.momentum``) and, for
        v1/v2, enqueues this batch's keys (gathered over ranks) after computing the loss.
        """
        m = self.momentum if momentum is None else momentum
        self.encoder_k.update(self.encoder_q, tau=1.0 - m)
        if not self.symmetric:
            k2 = self.key(view2)
            loss, accuracy = self.contrast(self.query(view1), k2)
            if self.queue is not None:
                self.queue.enqueue(k2.float())
            return MocoOutput(loss, accuracy, k2)
        q1, q2 = self.query(view1), self.query(view2)
        k1, k2 = self.key(view1), self.key(view2)
        loss_a, acc_a = self.contrast(q1, k2)
        loss_b, acc_b = self.contrast(q2, k1)
        # MoCo v3 scales the loss by 2T (its gradient then does not depend on T to first order).
        return MocoOutput(2.0 * self.temperature * (loss_a + loss_b), (acc_a + acc_b) / 2, k2)
