"""Tests for curl_moco.contrastive.queue.KeyQueue: exact contents, pointer, DDP gather."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from curl_moco.contrastive.queue import KeyQueue

# Tiny tensors: one thread is faster and avoids contention on a busy 2-core CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


def _keys(n: int, start: int) -> torch.Tensor:
    """n distinct 2-d keys, not unit length (so normalisation matters)."""
    ids = torch.arange(start, start + n, dtype=torch.float32)
    return torch.stack([ids + 1.0, 2.0 * ids + 3.0], dim=1)


def test_init_is_random_unit_keys_and_seeded() -> None:
    q = KeyQueue(dim=16, size=32, seed=0)
    assert q.keys.shape == (32, 16) and q.keys.dtype == torch.float32
    torch.testing.assert_close(q.keys.norm(dim=1), torch.ones(32))
    assert q.ptr.item() == 0 and q.num_enqueued.item() == 0 and q.ptr.dtype == torch.long
    assert torch.equal(q.keys, KeyQueue(16, 32, seed=0).keys)
    assert not torch.equal(q.keys, KeyQueue(16, 32, seed=1).keys)
    assert len(q) == 32 and not q.is_full


def test_enqueue_wraps_around_with_exact_contents() -> None:
    q = KeyQueue(dim=2, size=6, seed=0)
    init = q.keys.clone()
    a, b, c = _keys(2, 0), _keys(3, 10), _keys(3, 20)

    q.enqueue(a)
    assert q.ptr.item() == 2 and q.num_enqueued.item() == 2
    assert torch.equal(q.keys[:2], F.normalize(a, dim=1))
    assert torch.equal(q.keys[2:], init[2:])

    q.enqueue(b)
    assert q.ptr.item() == 5 and q.num_enqueued.item() == 5
    assert torch.equal(q.keys[2:5], F.normalize(b, dim=1))
    assert torch.equal(q.keys[5], init[5])
    assert not q.is_full

    q.enqueue(c)  # rows 5, 0, 1: wraps around
    assert q.ptr.item() == 2 and q.num_enqueued.item() == 8 and q.is_full
    nc = F.normalize(c, dim=1)
    expected = torch.stack([nc[1], nc[2], *F.normalize(b, dim=1), nc[0]])
    assert torch.equal(q.keys, expected)
    torch.testing.assert_close(q.keys.norm(dim=1), torch.ones(6))

    for _ in range(3):  # batches of 2 from ptr 2: rows 2-3, 4-5, 0-1
        q.enqueue(a)
    assert q.ptr.item() == 2 and torch.equal(q.keys, F.normalize(a, dim=1).repeat(3, 1))


def test_queue_size_must_be_multiple_of_batch() -> None:
    q = KeyQueue(dim=2, size=6)
    with pytest.raises(ValueError, match="queue_size=6"):
        q.enqueue(_keys(4, 0))
    with pytest.raises(ValueError, match="queue_size=6"):
        q.enqueue(_keys(7, 0))
    assert q.ptr.item() == 0 and q.num_enqueued.item() == 0
    KeyQueue.check_batch(65536, 256)
    with pytest.raises(ValueError, match="queue_size=1000"):
        KeyQueue.check_batch(1000, 3 * 128)
    with pytest.raises(ValueError, match="queue_size=0"):
        KeyQueue(dim=2, size=0)
    with pytest.raises(ValueError, match="dim=2"):
        q.enqueue(torch.ones(2, 3))


def test_negatives_is_a_detached_copy() -> None:
    q = KeyQueue(dim=4, size=4, seed=0)
    q.enqueue(torch.randn(2, 4, requires_grad=True))
    neg = q.negatives()
    assert neg.shape == (4, 4) and not neg.requires_grad
    assert torch.equal(neg, q.keys)
    neg.zero_()
    assert q.keys.abs().sum() > 0


def test_state_dict_round_trip() -> None:
    q = KeyQueue(dim=3, size=6, seed=0)
    q.enqueue(torch.randn(3, 3))
    q.enqueue(torch.randn(3, 3))
    q.enqueue(torch.randn(3, 3))
    state = q.state_dict()
    assert set(state) == {"keys", "ptr", "num_enqueued"}
    fresh = KeyQueue(dim=3, size=6, seed=1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.keys, q.keys)
    assert fresh.ptr.item() == 3 and fresh.num_enqueued.item() == 9
    nxt = torch.randn(3, 3)
    q.enqueue(nxt)
    fresh.enqueue(nxt)
    assert torch.equal(fresh.keys, q.keys)
    with pytest.raises(RuntimeError):
        KeyQueue(dim=3, size=12).load_state_dict(state)


def test_gather_without_process_group_is_local() -> None:
    q1, q2 = KeyQueue(2, 6, seed=0), KeyQueue(2, 6, seed=0)
    q1.enqueue(_keys(2, 0), gather=True)
    q2.enqueue(_keys(2, 0))
    assert torch.equal(q1.keys, q2.keys) and q1.ptr.item() == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, results: mp.SimpleQueue) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        q = KeyQueue(dim=2, size=8, seed=0)
        q.enqueue(_keys(2, 100 * rank))  # gather defaults to True: world size 2
        try:
            q.enqueue(_keys(3, 0))  # global batch 6 does not divide 8
            err = ""
        except ValueError as exc:
            err = str(exc)
        results.put((rank, q.keys.tolist(), int(q.ptr), int(q.num_enqueued), err))
    finally:
        dist.destroy_process_group()


def test_enqueue_gathers_across_ddp_ranks() -> None:
    """Two gloo ranks in forked processes (fork: no re-import, about a second)."""
    world, port = 2, _free_port()
    ctx = mp.get_context("fork")
    results = ctx.SimpleQueue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, world, port, results)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "DDP workers did not finish in 60 s"
    assert [p.exitcode for p in procs] == [0, 0]
    init = KeyQueue(dim=2, size=8, seed=0).keys
    gathered = F.normalize(torch.cat([_keys(2, 0), _keys(2, 100)]), dim=1)
    for _ in range(world):
        rank, keys, ptr, count, err = results.get()
        keys = torch.tensor(keys)
        assert ptr == 4 and count == 4, rank
        assert torch.equal(keys[:4], gathered)  # rank 0's keys first, then rank 1's
        assert torch.equal(keys[4:], init[4:])
        assert "queue_size=8" in err
