"""Replay memory per transition and sample()+crop throughput: ours vs CURL's stacked layout.

Ours (``curl_moco.rl.replay.ReplayBuffer``) stores each rendered frame once and rebuilds the
``obs``/``next_obs`` stacks by index; the batch is cropped on its device with one batched gather
(``random_crop``), three crops per update as the agent does (anchor, positive, next obs).
The baseline (``StackedReplayBaseline``) stores an obs AND a next-obs stack per transition and
crops with a per-sample NumPy loop, then converts to float, as the original CURL code does.

    python -m experiments.bench.bench_replay [--capacity 10000] [--batch-sizes 128 512]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from curl_moco.experiments.bench.baselines import StackedReplayBaseline
from curl_moco.experiments.bench.common import (
    command_line,
    machine_info,
    prepare_device,
    print_table,
    time_interleaved,
    write_results,
)


def fill(ours: Any, base: StackedReplayBaseline | None, transitions: int, episode_length: int,
         frame_shape: tuple[int, int, int], frame_stack: int, action_dim: int,
         seed: int = 0) -> dict[str, float]:
    """Write ``transitions`` steps (episodes of ``episode_length``) into both buffers; frames
    come from a small pool of random images (content does not change the speed). Returns the
    seconds each buffer spent in ``add``."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, size=(64, *frame_shape), dtype=np.uint8)
    actions = rng.uniform(-1, 1, size=(256, action_dim)).astype(np.float32)
    spent = {"ours_s": 0.0, "baseline_s": 0.0}
    stack: list[np.ndarray] = []
    step = 0
    for t in range(transitions):
        frame = pool[t % len(pool)]
        if step == 0:
            stack = [frame] * frame_stack
            t0 = time.perf_counter()
            ours.start_episode(frame)
            spent["ours_s"] += time.perf_counter() - t0
        obs = np.concatenate(stack, axis=0)
        nxt_frame = pool[(t + 1) % len(pool)]
        stack = [*stack[1:], nxt_frame]
        nxt = np.concatenate(stack, axis=0)
        action, reward = actions[t % len(actions)], float(t % 7) / 7
        t0 = time.perf_counter()
        ours.add(action, reward, nxt_frame, False)
        spent["ours_s"] += time.perf_counter() - t0
        if base is not None:
            t0 = time.perf_counter()
            base.add(obs, action, reward, nxt, False)
            spent["baseline_s"] += time.perf_counter() - t0
        step = (step + 1) % episode_length
    return spent


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=10_000,
                        help="transitions held by each buffer while timing")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--image-size", type=int, default=100)
    parser.add_argument("--crop-size", type=int, default=84)
    parser.add_argument("--frame-stack", type=int, default=3)
    parser.add_argument("--action-dim", type=int, default=6, help="walker/cheetah: 6")
    parser.add_argument("--episode-length", type=int, default=125,
                        help="agent steps per episode (cartpole: 1000 / action repeat 8)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per variant")
    parser.add_argument("--device", default="cpu", help="where batches go: cpu | cuda | auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)

    from curl_moco.contrastive.augment import random_crop
    from curl_moco.rl.replay import ReplayBuffer
    device = prepare_device(args.device, args.threads)
    frame_shape = (3, args.image_size, args.image_size)
    k, a = args.frame_stack, args.action_dim
    # One extra slot per episode (its reset frame) so both buffers hold `capacity` transitions.
    episodes = -(-args.capacity // args.episode_length)
    ours = ReplayBuffer(args.capacity + episodes + k, frame_shape, k, a, device=device, seed=0)
    base = StackedReplayBaseline((3 * k, args.image_size, args.image_size), a, args.capacity,
                                 device, seed=0)
    fill_s = fill(ours, base, args.capacity, args.episode_length, frame_shape, k, a)

    t_len = args.episode_length
    ours_slot = ours.nbytes / ours.capacity
    ours_per_transition = ours_slot * (t_len + 1) / t_len  # + the reset frame of each episode
    base_per_transition = base.nbytes / base.capacity
    memory = {
        "ours_bytes_per_slot": ours_slot,
        "ours_bytes_per_transition": ours_per_transition,
        "baseline_bytes_per_transition": base_per_transition,
        "ratio_ours_over_baseline": ours_per_transition / base_per_transition,
        "ours_gb_at_100k": ours_per_transition * 100_000 / 1e9,
        "baseline_gb_at_100k": base_per_transition * 100_000 / 1e9,
        "episode_length": t_len,
        "add_per_s": {"ours": args.capacity / max(fill_s["ours_s"], 1e-9),
                      "baseline": args.capacity / max(fill_s["baseline_s"], 1e-9)},
    }
    print_table(f"bench_replay: memory, {k} x {frame_shape} uint8 frames, action dim {a}",
                ["buffer", "bytes/transition", "GB at 100k", "adds/s"],
                [["ours (frames once)", ours_per_transition, memory["ours_gb_at_100k"],
                  memory["add_per_s"]["ours"]],
                 ["baseline (obs+next_obs stacks)", base_per_transition,
                  memory["baseline_gb_at_100k"], memory["add_per_s"]["baseline"]],
                 ["ratio ours/baseline", memory["ratio_ours_over_baseline"],
                  f"1/{1 / memory['ratio_ours_over_baseline']:.2f}", ""]])

    generator = torch.Generator(device=device).manual_seed(0)
    crop = args.crop_size

    def ours_crops(batch_size: int, to_float: bool):
        def call():
            b = ours.sample(batch_size)
            out = [random_crop(b.obs, crop, generator=generator),
                   random_crop(b.obs, crop, generator=generator),
                   random_crop(b.next_obs, crop, generator=generator)]
            if to_float:
                out = [x.float() for x in out]
            return out, b.action, b.reward, b.not_done
        return call

    variants = {"baseline": "baseline: stacks, NumPy crops, float",
                "ours": "ours: frame gather + batched crops (uint8)",
                "ours_float": "ours + float conversion (baseline's dtype)"}
    rows, records = [], []
    for batch_size in args.batch_sizes:
        fns = {"baseline": lambda bs=batch_size: base.sample_cropped(bs, crop),
               "ours": ours_crops(batch_size, to_float=False),
               "ours_float": ours_crops(batch_size, to_float=True)}
        timings = time_interleaved({n: fns[n] for n in variants}, device=device,
                                   repeats=args.repeats, warmup=2)
        base_s = timings["baseline"]["median_s"]
        record: dict[str, Any] = {"batch_size": batch_size}
        for name, label in variants.items():
            t = timings[name]["median_s"]
            record[name] = dict(timings[name], samples_per_s=batch_size / t,
                                speedup_vs_baseline=base_s / t)
            rows.append([batch_size, label, t * 1e3, batch_size / t, base_s / t])
        records.append(record)
    print_table(f"bench_replay: sample(B) + 3 crops to {crop} on {device} "
                f"(capacity {args.capacity}, median of {args.repeats})",
                ["batch", "variant", "ms/batch", "samples/s", "speedup"], rows)
    results = {
        "machine": machine_info(device),
        "command": command_line("experiments.bench.bench_replay", argv),
        "settings": {k_: v for k_, v in vars(args).items() if k_ != "out_dir"},
        "memory": memory,
        "sampling": records,
        "notes": ("random_crop copies one slice per sample on the CPU and gathers from a "
                  "window view on accelerators (curl_moco.contrastive.augment.crop_at)"),
        "goals": {
            "memory_ratio_at_most_1_over_5.5": memory["ratio_ours_over_baseline"] <= 1 / 5.5,
            "sampling_at_least_as_fast": all(r["ours"]["speedup_vs_baseline"] >= 1.0
                                             for r in records),
        },
    }
    write_results("bench_replay", results, args.out_dir)
    return results


if __name__ == "__main__":
    main()
