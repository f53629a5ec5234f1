"""Full CURL-SAC updates per second (critic + actor + alpha + CURL + EMA, sampling included).

Variants, all on the same networks (``curl_moco.rl.networks``) and hyper-parameters:

- ``baseline``: the reference code's update structure (:class:`ReferenceCurlSac` fed by
  :class:`StackedReplayBaseline`): obs/next_obs stacks cropped per sample with NumPy on the CPU
  and sent to the device as float, ``obs`` encoded again for the actor and again for the critic
  in the actor update, the anchor encoded again for CURL, the encoder stepped by two optimisers
  after the CURL loss, EMA by a Python loop;
- ``ours``: ``CurlSacAgent.update(ReplayBuffer.sample(B))`` as the trainer calls it;
- ``ours+<option>``: the same with one PyTorch option switched on through the agent's flags
  (below; the trainer's knobs of the same names), and ``ours+all``: all of them together.
  The fastest of our variants at the first batch size names the option set measured at the
  other batch sizes.

Options (``--options``) and the agent flag each sets: ``channels_last`` (``channels_last``:
conv weights and activations NHWC), ``fused_adam`` (``fused_adam``: ``Adam(fused=True)``),
``compile`` (``compile_mode="default"``: ``torch.compile`` of the encoders' conv stacks),
``bf16`` (``amp="bf16"``: autocast of the update; default on CUDA only: a CPU without bf16
instructions emulates it slowly), ``cudagraphs`` (``compile_mode="reduce-overhead"``, which
captures CUDA graphs; CUDA). Plain ``ours`` has all of them off (the agent's defaults are
``channels_last`` and ``fused_adam`` on).

One timed call = two consecutive updates (the actor, alpha and targets are updated every second
update), variants interleaved round-robin so that load changes hit them alike; each variant
first runs ``--warmup`` untimed updates.

    python -m experiments.bench.bench_update                      # CPU: small budget
    python -m experiments.bench.bench_update --repeats 10 --options channels_last fused_adam compile
    python -m experiments.bench.bench_update --device cuda --repeats 50   # all GPU options
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from typing import Any

import torch

from experiments.bench.baselines import ReferenceCurlSac, StackedReplayBaseline
from experiments.bench.bench_replay import fill
from experiments.bench.common import (
    command_line,
    machine_info,
    prepare_device,
    print_table,
    time_interleaved,
    write_results,
)

OPTIONS: tuple[str, ...] = ("channels_last", "fused_adam", "compile", "bf16", "cudagraphs")
CUDA_ONLY: frozenset[str] = frozenset({"cudagraphs"})
DEFAULT_OPTIONS = {"cpu": ("channels_last", "fused_adam", "compile"),
                   "cuda": ("channels_last", "fused_adam", "compile", "bf16", "cudagraphs")}


def agent_flags(options: tuple[str, ...]) -> dict[str, Any]:
    """``CurlSacAgent`` keyword arguments for a set of ``--options`` (the rest off)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise KeyError(f"unknown options {sorted(unknown)}; valid: {OPTIONS}")
    compile_mode = ("reduce-overhead" if "cudagraphs" in options
                    else "default" if "compile" in options else "off")
    return {"channels_last": "channels_last" in options,
            "fused_adam": "fused_adam" in options,
            "compile_mode": compile_mode,
            "amp": "bf16" if "bf16" in options else "off"}


def prototype_update(agent: Any, options: tuple[str, ...]) -> Callable[[Any], Any]:
    """:class:`SharedForwardUpdate` on ``agent`` (options already applied to the agent)."""
    from experiments.bench.prototypes import SharedForwardUpdate

    shared = SharedForwardUpdate(agent)
    if "fused_adam" in options:
        for group in shared.optimizer.param_groups:
            group["fused"], group["foreach"] = True, False
    if "bf16" not in options:
        return shared

    def update_bf16(batch: Any) -> Any:
        with torch.autocast(agent.device.type, dtype=torch.bfloat16):
            return shared(batch)
    return update_bf16


def build_ours(args: argparse.Namespace, device: torch.device, options: tuple[str, ...],
               template: torch.nn.Module | None) -> tuple[Any, Callable[[Any], Any]]:
    from curl_moco.rl.agent import CurlSacAgent

    agent = CurlSacAgent(3 * args.frame_stack, args.crop_size, args.action_dim,
                         feature_dim=args.feature_dim, hidden_dim=args.hidden_dim,
                         num_layers=args.num_layers, num_filters=args.num_filters,
                         device=device, seed=0, **agent_flags(options))
    if template is not None:  # identical starting weights for every variant
        agent.load_state_dict(template.state_dict())
    return agent, agent.update


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--options", nargs="*", default=None, choices=OPTIONS,
                        help="options measured one at a time (default: cpu: channels_last "
                             "fused_adam compile; cuda: all)")
    parser.add_argument("--all-options-at-every-batch", action="store_true",
                        help="measure each option at every batch size (default: only at the "
                             "first; later ones get the baseline and our fastest option set)")
    parser.add_argument("--prototype", action="store_true",
                        help="also time experiments.bench.prototypes.SharedForwardUpdate (a "
                             "CHANGED update: one encoder forward/backward for critic + CURL)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed calls (of 2 updates) per variant and batch size")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed updates per variant (the first one updates everything); "
                             "compile/cudagraphs get 6 more")
    parser.add_argument("--capacity", type=int, default=2_000, help="transitions in the buffers")
    parser.add_argument("--image-size", type=int, default=100)
    parser.add_argument("--crop-size", type=int, default=84)
    parser.add_argument("--frame-stack", type=int, default=3)
    parser.add_argument("--action-dim", type=int, default=6)
    parser.add_argument("--hidden-dim", type=int, default=1024)
    parser.add_argument("--feature-dim", type=int, default=50)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-filters", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)

    from curl_moco.rl.replay import ReplayBuffer
    device = prepare_device(args.device, args.threads)
    options = tuple(args.options) if args.options is not None else DEFAULT_OPTIONS[device.type]
    skipped = {o: "needs CUDA" for o in options if o in CUDA_ONLY and device.type != "cuda"}
    options = tuple(o for o in options if o not in skipped)
    for option, why in skipped.items():
        print(f"[bench_update] skipping option {option}: {why}")

    torch.manual_seed(args.seed)
    frame_shape = (3, args.image_size, args.image_size)
    k, a, t_len = args.frame_stack, args.action_dim, 125
    episodes = -(-args.capacity // t_len)
    replay = ReplayBuffer(args.capacity + episodes + k, frame_shape, k, a, device=device, seed=0)
    stacked = StackedReplayBaseline((3 * k, args.image_size, args.image_size), a, args.capacity,
                                    device, seed=0)
    fill(replay, stacked, args.capacity, t_len, frame_shape, k, a, seed=args.seed)

    net_kw = dict(feature_dim=args.feature_dim, hidden_dim=args.hidden_dim,
                  num_layers=args.num_layers, num_filters=args.num_filters)
    template, _ = build_ours(args, device, (), None)
    template = copy.deepcopy(template)

    def make_variant(name: str, opts: tuple[str, ...], batch_size: int
                     ) -> tuple[Callable[[], None], Callable[[], None]]:
        """``(two updates, one update)`` of a variant."""
        if name == "baseline":
            ref = ReferenceCurlSac(3 * k, args.crop_size, a, device=device, **net_kw)
            # same starting weights as ours
            ref.critic.load_state_dict(template.critic.state_dict())
            ref.critic_target.encoder.load_state_dict(template.critic.encoder.state_dict())
            ref.critic_target.heads.load_state_dict(template.target_heads.state_dict())
            ref.actor.load_state_dict(template.actor.state_dict())

            def one() -> None:
                ref.update(stacked.sample_cropped(batch_size, args.crop_size))
        else:
            agent, update = build_ours(args, device, opts, template)
            if name.startswith("prototype"):
                update = prototype_update(agent, opts)

            def one() -> None:
                update(replay.sample(batch_size))

        def two() -> None:
            one()
            one()
        return two, one

    def measure(batch_size: int, variants: dict[str, tuple[str, ...]]) -> dict[str, Any]:
        """Time ``variants`` interleaved; each timed entry gets its speedup over the baseline
        measured in the same call."""
        fns, errors = {}, {}
        for name, opts in variants.items():
            try:
                two, one = make_variant(name, opts, batch_size)
                slow_start = any(o in ("compile", "cudagraphs") for o in opts)
                for _ in range(args.warmup + (6 if slow_start else 0)):
                    one()
                fns[name] = two
            except Exception as error:  # noqa: BLE001 - report and go on
                errors[name] = {"error": f"{type(error).__name__}: {error}"}
                print(f"[bench_update] {name} failed: {errors[name]['error']}")
        timings = time_interleaved(
            fns, device=device, repeats=args.repeats, warmup=0,
            on_error=lambda n, e: print(f"[bench_update] {n} failed: {type(e).__name__}: {e}"))
        timings.update(errors)
        base_s = timings.get("baseline", {}).get("median_s")
        for name, t in timings.items():
            if "median_s" in t:
                t["options"] = list(variants[name])
                t["seconds_per_update"] = t["median_s"] / 2
                t["updates_per_s"] = 2 / t["median_s"]
                if base_s:
                    t["speedup_vs_baseline"] = base_s / t["median_s"]
        return timings

    records, rows = [], []
    best: tuple[str, ...] = ()
    for index, batch_size in enumerate(args.batch_sizes):
        every = index == 0 or args.all_options_at_every_batch
        variants: dict[str, tuple[str, ...]] = {"baseline": ()}
        if every:
            variants["ours"] = ()
            variants.update({f"ours+{o}": (o,) for o in options})
            if len(options) > 1:
                variants["ours+all"] = options
            if args.prototype:
                variants["prototype"] = ()
                if options:
                    variants["prototype+all"] = options
        else:
            variants["ours+" + "+".join(best) if best else "ours"] = best
            if args.prototype:
                variants["prototype+" + "+".join(best) if best else "prototype"] = best
        timings = measure(batch_size, variants)
        if every:  # the fastest of our variants names the option set used from here on
            ours_runs = {n: t for n, t in timings.items()  # the library's agent only
                         if n.startswith("ours") and "median_s" in t}
            if ours_runs:
                fastest = min(ours_runs, key=lambda n: ours_runs[n]["median_s"])
                best = tuple(ours_runs[fastest]["options"])
        record = {"batch_size": batch_size, "best_options": list(best), "variants": timings}
        for name, t in timings.items():
            label = name + (" (fastest)" if t.get("options") == list(best)
                            and name.startswith("ours") and len(timings) > 3 else "")
            if "median_s" not in t:
                rows.append([batch_size, label, "-", "-", "-", t["error"][:60]])
                continue
            rows.append([batch_size, label, t["seconds_per_update"] * 1e3, t["updates_per_s"],
                         t.get("speedup_vs_baseline", float("nan")),
                         _flags(name, tuple(t["options"]))])
        records.append(record)
    print_table(f"bench_update: CURL-SAC updates on {device} (frame stack {k}, "
                f"{args.image_size}->{args.crop_size}, median of {args.repeats} x 2 updates)",
                ["batch", "variant", "ms/update", "updates/s", "speedup", "flags"], rows)
    goal = 3.0 if device.type == "cuda" else 1.5
    best_speedups = {r["batch_size"]: max(  # the library's agent, not prototypes
        (v.get("speedup_vs_baseline", 0.0) for n, v in r["variants"].items()
         if n.startswith("ours")), default=0.0) for r in records}
    results = {
        "machine": machine_info(device),
        "command": command_line("experiments.bench.bench_update", argv),
        "settings": {k_: v for k_, v in vars(args).items() if k_ != "out_dir"},
        "options_measured": list(options), "options_skipped": skipped,
        "results": records,
        "goal": {"speedup": goal, "best_speedup_by_batch": best_speedups,
                 "met": all(s >= goal for s in best_speedups.values())},
    }
    write_results("bench_update", results, args.out_dir)
    return results


def _flags(name: str, opts: tuple[str, ...]) -> str:
    """The options of a variant, as named by ``--options``."""
    if name.startswith("baseline"):
        return "(reference structure)"
    text = " ".join(opts) if opts else "(none)"
    return text + (" [CHANGED update]" if name.startswith("prototype") else "")


if __name__ == "__main__":
    main()
