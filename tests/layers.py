"""Test helper: a module's layer list in comparable form (for architecture checks)."""

from __future__ import annotations

from torch import nn


def layer_signature(seq: nn.Sequential) -> list[tuple]:
    """(type, in, out, bias) for Linear, (type, width, affine) for BatchNorm1d, (type,) else."""
    out: list[tuple] = []
    for m in seq:
        if isinstance(m, nn.Linear):
            out.append(("Linear", m.in_features, m.out_features, m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d):
            out.append(("BN", m.num_features, m.affine))
        else:
            out.append((type(m).__name__,))
    return out
