"""Tests for curl_moco.contrastive.losses against cross entropies computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from curl_moco.contrastive.losses import InfoNCE, info_nce, info_nce_logits

# Tiny tensors: one thread is faster and avoids contention on a busy 2-core CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


Matrix = list[list[float]]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _unit(a: list[float]) -> list[float]:
    n = math.sqrt(_dot(a, a))
    return [x / n for x in a]


def _matvec_t(w: Matrix, k: list[float]) -> list[float]:
    """W k for a row-major W."""
    return [_dot(row, k) for row in w]


def _hand_loss(
    q: Matrix, k: Matrix, neg: Matrix, sim: str, temp: float, w: Matrix | None, in_batch: bool
) -> tuple[float, float]:
    """Plain-Python InfoNCE: mean over rows of -s_pos + log(sum exp s_j); and top-1 accuracy."""

    def score(a: list[float], b: list[float]) -> float:
        if sim == "cosine":
            return _dot(_unit(a), _unit(b)) / temp
        if sim == "dot":
            return _dot(a, b) / temp
        return _dot(a, _matvec_t(w, b)) / temp

    total, correct = 0.0, 0
    for i, qi in enumerate(q):
        cols = ([score(qi, kj) for kj in k] if in_batch else [score(qi, k[i])]) + [
            score(qi, n) for n in neg
        ]
        pos = i if in_batch else 0
        total += -cols[pos] + math.log(sum(math.exp(c) for c in cols))
        correct += int(max(range(len(cols)), key=cols.__getitem__) == pos)
    return total / len(q), correct / len(q)


Q = [[1.0, 2.0, 0.5], [-0.5, 1.0, 1.5], [0.3, -1.2, 0.8]]
K = [[0.9, 1.5, 0.0], [0.2, 0.4, 1.0], [1.0, -1.0, 0.2]]
NEG = [[1.0, 0.0, 0.0], [0.0, -1.0, 1.0]]
W = [[0.5, 0.1, 0.0], [0.2, 1.0, -0.3], [0.0, 0.4, 0.8]]


@pytest.mark.parametrize(
    "similarity, temperature", [("cosine", 0.2), ("dot", 0.5), ("bilinear", 1.0)]
)
@pytest.mark.parametrize("layout", ["in_batch", "queue_only", "both"])
def test_info_nce_equals_hand_cross_entropy(
    similarity: str, temperature: float, layout: str
) -> None:

    in_batch = layout != "queue_only"
    neg = [] if layout == "in_batch" else NEG
    weight = torch.tensor(W, dtype=torch.float64) if similarity == "bilinear" else None
    out = info_nce(
        torch.tensor(Q, dtype=torch.float64),
        torch.tensor(K, dtype=torch.float64),
        torch.tensor(neg, dtype=torch.float64) if neg else None,
        similarity=similarity,
        temperature=temperature,
        weight=weight,
        in_batch=in_batch,
    )
    loss, acc = _hand_loss(Q, K, neg, similarity, temperature, W, in_batch)
    assert out.loss.item() == pytest.approx(loss, rel=1e-12)
    assert out.accuracy.item() == pytest.approx(acc)
    n_cols = (3 if in_batch else 1) + len(neg)
    assert out.logits.shape == (3, n_cols)


def test_info_nce_literal_value() -> None:
    """Orthonormal q = k, dot, T=1: logits [[1, 0], [0, 1]] -> loss log(1 + e^-1)."""
    eye = torch.eye(2)
    out = info_nce(eye, eye, similarity="dot")
    assert out.loss.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert torch.equal(out.logits, eye)
    assert out.accuracy.item() == 1.0
    # MoCo layout: positive at column 0, one queue negative e_1 (or e_0 for row 1).
    out = info_nce(eye, eye, torch.eye(2)[[1]], similarity="dot", in_batch=False)
    assert torch.equal(out.logits, torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    expected = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("in_batch", [True, False])
def test_accuracy_is_one_when_keys_equal_queries(in_batch: bool) -> None:
    torch.manual_seed(0)
    q = torch.randn(16, 8)
    neg = torch.randn(32, 8)
    out = info_nce(q, q.clone(), neg, similarity="cosine", temperature=0.07, in_batch=in_batch)
    assert out.accuracy.item() == 1.0
    # Keys of other rows (a cyclic shift): no row finds its positive among the batch.
    out = info_nce(q, q.roll(1, dims=0), similarity="cosine", temperature=0.07)
    assert out.accuracy.item() == 0.0


def test_bilinear_subtracts_row_max_and_identity_w_is_dot() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(4, 5), torch.randn(4, 5)
    bil = info_nce(q, k, similarity="bilinear", weight=torch.eye(5))
    dot = info_nce(q, k, similarity="dot")
    torch.testing.assert_close(bil.loss, dot.loss)
    torch.testing.assert_close(bil.logits.amax(dim=1), torch.zeros(4))
    torch.testing.assert_close(bil.logits, dot.logits - dot.logits.amax(dim=1, keepdim=True))


def test_info_nce_logits_labels() -> None:
    q = torch.randn(3, 4)
    _, labels = info_nce_logits(q, q, similarity="dot")
    assert labels.tolist() == [0, 1, 2]
    logits, labels = info_nce_logits(q, q, torch.randn(5, 4), in_batch=False)
    assert labels.tolist() == [0, 0, 0] and logits.shape == (3, 6)


def test_gradients_flow_to_query_key_and_w() -> None:
    torch.manual_seed(0)
    crit = InfoNCE(6)  # bilinear, CURL
    assert crit.W is not None and crit.W.shape == (6, 6)
    assert 0.0 <= crit.W.min().item() and crit.W.max().item() < 1.0  # torch.rand init
    q = torch.randn(4, 6, requires_grad=True)
    k = torch.randn(4, 6, requires_grad=True)
    out = crit(q, k.detach())
    out.loss.backward()
    assert q.grad is not None and crit.W.grad is not None and k.grad is None
    ref = info_nce(q, k, similarity="bilinear", weight=crit.W)
    torch.testing.assert_close(out.loss, ref.loss)
    assert "W" in dict(crit.named_parameters())
    cos = InfoNCE(6, similarity="cosine", temperature=0.2, in_batch=False)
    assert cos.W is None and len(list(cos.parameters())) == 0
    neg = torch.randn(10, 6)
    torch.testing.assert_close(
        cos(q, k, neg).loss,
        info_nce(q, k, neg, similarity="cosine", temperature=0.2, in_batch=False).loss,
    )


def test_bad_settings_are_named() -> None:
    q = torch.randn(3, 4)
    with pytest.raises(ValueError, match="similarity='l2'"):
        info_nce(q, q, similarity="l2")
    with pytest.raises(ValueError, match="temperature=0"):
        info_nce(q, q, temperature=0.0)
    with pytest.raises(ValueError, match="in_batch=False"):
        info_nce(q, q, in_batch=False)
    with pytest.raises(ValueError, match="weight"):
        info_nce(q, q, similarity="bilinear")
    with pytest.raises(ValueError, match="negatives"):
        info_nce(q, q, torch.randn(5, 3))
    with pytest.raises(ValueError, match="query and key"):
        info_nce(q, torch.randn(2, 4))
    with pytest.raises(ValueError, match="similarity="):
        InfoNCE(4, similarity="cos")
