"""CURL-SAC update time with and without :func:`curl_moco.runtime.keep_freed_memory`.

The setting is process-wide and cannot be undone, so each measurement runs in a fresh child
process: ``default`` (glibc's own thresholds) or ``kept`` (freed blocks up to 32 MiB stay in the
heap). Children alternate (default, kept, default, kept, ...) so load changes hit both alike;
each child times ``--updates`` updates of one agent on one random uint8 batch after two untimed
ones. The trainers and the other benchmarks do not call ``keep_freed_memory`` (it is opt-in);
this benchmark sizes what it would give.

    python -m experiments.bench.bench_allocator [--batch-size 128] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from experiments.bench.common import command_line, machine_info, print_table, write_results

MODES: tuple[str, ...] = ("default", "kept")


def child(mode: str, args: argparse.Namespace) -> float:
    """Seconds per update in this (fresh) process."""
    import torch

    from curl_moco.rl.agent import CurlSacAgent
    from curl_moco.rl.replay import ReplayBatch
    from curl_moco.runtime import keep_freed_memory

    if mode == "kept" and not keep_freed_memory():
        raise RuntimeError("keep_freed_memory() had no effect here (not glibc?)")
    torch.manual_seed(0)
    b, c, s = args.batch_size, 3 * args.frame_stack, args.image_size
    agent = CurlSacAgent(c, args.crop_size, args.action_dim, hidden_dim=args.hidden_dim,
                         num_filters=args.num_filters, num_layers=args.num_layers)
    batch = ReplayBatch(obs=torch.randint(0, 256, (b, c, s, s), dtype=torch.uint8),
                        action=torch.rand(b, args.action_dim) * 2 - 1, reward=torch.rand(b, 1),
                        next_obs=torch.randint(0, 256, (b, c, s, s), dtype=torch.uint8),
                        not_done=torch.ones(b, 1))
    for _ in range(2):
        agent.update(batch)
    t0 = time.perf_counter()
    for _ in range(args.updates):
        agent.update(batch)
    return (time.perf_counter() - t0) / args.updates


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--updates", type=int, default=4, help="timed updates per child")
    parser.add_argument("--rounds", type=int, default=2, help="children per mode")
    parser.add_argument("--image-size", type=int, default=100)
    parser.add_argument("--crop-size", type=int, default=84)
    parser.add_argument("--frame-stack", type=int, default=3)
    parser.add_argument("--action-dim", type=int, default=6)
    parser.add_argument("--hidden-dim", type=int, default=1024)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-filters", type=int, default=32)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps({"seconds_per_update": child(args.child, args)}))
        return {}

    forwarded = list(argv if argv is not None else sys.argv[1:])  # a child writes no file
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, "-m", "experiments.bench.bench_allocator", *forwarded,
                 "--child", mode], check=True, capture_output=True, text=True).stdout
            seconds[mode].append(json.loads(out.strip().splitlines()[-1])["seconds_per_update"])
    median = {mode: statistics.median(values) for mode, values in seconds.items()}
    speedup = median["default"] / median["kept"]
    print_table(f"bench_allocator: CURL-SAC update, batch {args.batch_size}, CPU, "
                f"{args.rounds} fresh processes per mode", ["malloc", "s/update (each run)",
                                                            "median s/update", "speedup"],
                [[mode, " ".join(f"{v:.3f}" for v in seconds[mode]), median[mode],
                  median["default"] / median[mode]] for mode in MODES])
    results = {
        "machine": machine_info(),
        "command": command_line("experiments.bench.bench_allocator", argv),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out_dir", "child")},
        "seconds_per_update": seconds, "median_seconds_per_update": median,
        "speedup_kept_over_default": speedup,
    }
    write_results("bench_allocator", results, args.out_dir)
    return results


if __name__ == "__main__":
    main()
