"""InfoNCE contrastive losses: MoCo v1/v2 (cosine + queue), CURL (bilinear, in-batch), MoCo v3.

Logit layouts
- ``in_batch=True``: ``(B, B + K)``; columns ``0..B-1`` are the batch keys (positive of row i on
  the diagonal, column i), columns ``B..B+K-1`` the queue negatives (if any).
- ``in_batch=False``: ``(B, 1 + K)``; column 0 is the positive, then the K queue negatives
  (MoCo v1/v2; needs negatives).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

SIMILARITIES: tuple[str, ...] = ("cosine", "dot", "bilinear")


class InfoNCEOutput(NamedTuple):
    """``loss`` scalar; ``accuracy`` scalar in [0, 1] (detached): fraction of rows whose arg-max
    logit is the positive; ``logits`` ``(B, B + K)`` or ``(B, 1 + K)``, already scaled."""

    loss: torch.Tensor
    accuracy: torch.Tensor
    logits: torch.Tensor


def info_nce_logits(
    query: torch.Tensor,
    key: torch.Tensor,
    negatives: torch.Tensor | None = None,
    *,
    similarity: str = "cosine",
    temperature: float = 1.0,
    weight: torch.Tensor | None = None,
    in_batch: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contrastive logits and target column per row (see :func:`info_nce` for arguments).

    Returns ``(logits, labels)``: ``logits (B, B + K)`` with ``labels = arange(B)`` if
    ``in_batch``, else ``logits (B, 1 + K)`` with ``labels = zeros(B)``.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity={similarity!r} is not one of {SIMILARITIES}")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    if query.dim() != 2 or query.shape != key.shape:
        raise ValueError(
            f"query and key must both be (B, D); got {tuple(query.shape)} and {tuple(key.shape)}"
        )
    dim = query.shape[1]
    if negatives is not None and (negatives.dim() != 2 or negatives.shape[1] != dim):
        raise ValueError(f"negatives must be (K, D={dim}), got {tuple(negatives.shape)}")
    if not in_batch and negatives is None:
        raise ValueError("in_batch=False needs negatives (K, D) from a queue")
    if similarity == "bilinear":
        if weight is None or weight.shape != (dim, dim):
            got = None if weight is None else tuple(weight.shape)
            raise ValueError(
                f"similarity='bilinear' needs weight (D, D) = ({dim}, {dim}), got {got}"
            )
    elif weight is not None:
        raise ValueError(f"weight is only used with similarity='bilinear', not {similarity!r}")

    if similarity == "cosine":
        query, key = F.normalize(query, dim=1), F.normalize(key, dim=1)
        if negatives is not None:
            negatives = F.normalize(negatives, dim=1)
    elif similarity == "bilinear":
        query = query @ weight  # q^T W, so that logits are q^T W k

    if in_batch:
        logits = query @ key.t()
        labels = torch.arange(query.shape[0], device=query.device)
    else:
        logits = (query * key).sum(dim=1, keepdim=True)
        labels = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    if negatives is not None:
        logits = torch.cat([logits, query @ negatives.t()], dim=1)
    logits = logits / temperature
    if similarity == "bilinear":
        # CURL subtracts the row max for stability; cross entropy is unchanged by the shift.
        logits = logits - logits.detach().amax(dim=1, keepdim=True)
    return logits, labels


def _ce_and_accuracy(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    loss = F.cross_entropy(logits, labels)
    accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
    return loss, accuracy


def info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    negatives: torch.Tensor | None = None,
    *,
    similarity: str = "cosine",
    temperature: float = 1.0,
    weight: torch.Tensor | None = None,
    in_batch: bool = True,
) -> InfoNCEOutput:
    """InfoNCE loss of ``query (B, D)`` against positives ``key (B, D)``.

    similarity: ``"cosine"`` (q, k and negatives L2-normalised), ``"dot"`` (raw dot products) or
    ``"bilinear"`` (``q^T W k`` with ``weight (D, D)``; row max subtracted as in CURL); all are
    divided by ``temperature``. Negatives: the other keys of the batch when ``in_batch``, plus
    ``negatives (K, D)`` (e.g. :meth:`KeyQueue.negatives`) when given. The loss is the mean cross
    entropy of the positive column. Gradients flow into ``key`` unless the caller detaches it.

    Defaults: ``similarity="cosine"`` because a function owns no parameters (bilinear needs the
    caller's ``weight``), and ``temperature=1.0`` so that no scaling is hidden: MoCo passes its
    T (0.07 for v1, 0.2 for v2/v3) explicitly. :class:`InfoNCE`, which owns ``W``, defaults to
    CURL's bilinear form instead.
    """
    logits, labels = info_nce_logits(
        query,
        key,
        negatives,
        similarity=similarity,
        temperature=temperature,
        weight=weight,
        in_batch=in_batch,
    )
    loss, accuracy = _ce_and_accuracy(logits, labels)
    return InfoNCEOutput(loss, accuracy, logits)


class InfoNCE(nn.Module):
    """:func:`info_nce` as a module; owns CURL's learned ``W (dim, dim)`` when bilinear.

    ``W`` is initialised with ``torch.rand`` (uniform [0, 1)), as in CURL. Defaults to CURL's
    loss (``similarity="bilinear"``, ``temperature=1.0``, in-batch negatives), the reason to
    use the module rather than :func:`info_nce`, whose default is ``"cosine"`` because a
    function has no ``W`` of its own; pass ``similarity="cosine"`` and MoCo's temperature for
    MoCo's loss.
    """

    def __init__(
        self,
        dim: int,
        similarity: str = "bilinear",
        temperature: float = 1.0,
        in_batch: bool = True,
    ) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity={similarity!r} is not one of {SIMILARITIES}")
        if dim < 1:
            raise ValueError(f"dim={dim} must be >= 1")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        self.dim = dim
        self.similarity = similarity
        self.temperature = temperature
        self.in_batch = in_batch
        self.W: nn.Parameter | None = (
            nn.Parameter(torch.rand(dim, dim)) if similarity == "bilinear" else None
        )

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor | None = None
    ) -> InfoNCEOutput:
        """``query, key (B, dim)``, optional ``negatives (K, dim)`` -> :class:`InfoNCEOutput`."""
        return info_nce(
            query,
            key,
            negatives,
            similarity=self.similarity,
            temperature=self.temperature,
            weight=self.W,
            in_batch=self.in_batch,
        )

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, similarity={self.similarity!r}, "
            f"temperature={self.temperature}, in_batch={self.in_batch}"
        )
