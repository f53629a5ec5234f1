"""Markdown tables from benchmark JSON files (for README updates).

    python -m experiments.bench.summarize experiments/bench/results/*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _f(x: float, digits: int = 3) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}g}"


def _head(data: dict[str, Any], path: Path) -> list[str]:
    m = data["machine"]
    command = data.get("command", f"python -m experiments.bench.{data['benchmark']}")
    start = m.get("loadavg_1_5_15_at_start")
    end = m.get("loadavg_1_5_15_at_end", m.get("loadavg_1_5_15"))
    load = (f"at start {start}, at end {end}" if start else f"at end {end}")
    return [f"`{command}` -> `{path}`; {m['device']}, {m['torch_threads']} threads, "
            f"load average (1/5/15 min) {load}", ""]


def replay(data: dict[str, Any], path: Path) -> list[str]:
    mem = data["memory"]
    lines = _head(data, path) + [
        "| buffer | bytes/transition | GB at 100k transitions |", "|---|---|---|",
        f"| ours | {_f(mem['ours_bytes_per_transition'])} | {mem['ours_gb_at_100k']:.2f} |",
        f"| baseline | {_f(mem['baseline_bytes_per_transition'])} | "
        f"{mem['baseline_gb_at_100k']:.2f} |",
        f"| ratio | 1/{1 / mem['ratio_ours_over_baseline']:.2f} | |", "",
        "| batch | variant | ms/batch | samples/s | vs baseline |", "|---|---|---|---|---|"]
    for record in data["sampling"]:
        for name, t in record.items():
            if isinstance(t, dict):
                lines.append(f"| {record['batch_size']} | {name} | {t['median_s'] * 1e3:.1f} | "
                             f"{_f(t['samples_per_s'])} | {t['speedup_vs_baseline']:.2f}x |")
    return lines


def update(data: dict[str, Any], path: Path) -> list[str]:
    precision = data.get("trainer_default_precision", {}).get("reason", "")
    lines = _head(data, path) + [f"trainer default precision: {precision}", "",
                                 "| batch | row | ms/update | updates/s | vs baseline |",
                                 "|---|---|---|---|---|"]
    for record in data["results"]:
        for name, t in record["rows"].items():
            if "error" in t:
                lines.append(f"| {record['batch_size']} | {name} | failed: {t['error'][:60]} "
                             "| | |")
                continue
            lines.append(f"| {record['batch_size']} | {name} | "
                         f"{t['seconds_per_update'] * 1e3:,.0f} | {t['updates_per_s']:.3f} | "
                         f"{t.get('speedup_vs_baseline', float('nan')):.2f}x |")
        if "baseline_over_official" in record:
            lines.append(f"| {record['batch_size']} | baseline / official | "
                         f"{record['baseline_over_official']:.2f} | | |")
    return lines


def env(data: dict[str, Any], path: Path) -> list[str]:
    lines = _head(data, path) + [
        "| backend | pixels | action repeat | ours env-steps/s | baseline env-steps/s | ratio |",
        "|---|---|---|---|---|---|"]
    for r in data["results"]:
        base = r["baseline_render_every_physics_step"] or {}
        lines.append(f"| {r['backend']} | {r['image_size']} | {r['ours']['action_repeat']} | "
                     f"{r['ours']['env_steps_per_s']:.0f} | "
                     f"{base.get('env_steps_per_s', float('nan')):.0f} | {r['speedup']:.2f}x |")
    return lines


def pretrain(data: dict[str, Any], path: Path) -> list[str]:
    s = data["settings"]
    aug, train = data["augment"], data["moco_training"]
    lines = _head(data, path) + [
        f"{s['image_size']} px JPEG -> two {s['crop_size']} px views, batch {s['batch_size']}, "
        f"{s['num_workers']} workers", "",
        "| what | baseline images/s | ours images/s | ours / baseline |", "|---|---|---|---|",
        f"| augmentation (2 views) | {aug['baseline']['images_per_s']:.0f} | "
        f"{aug['ours']['images_per_s']:.0f} | {aug['speedup']:.2f}x |"]
    if "speedup" in train:
        lines.append(f"| MoCo v2 ResNet-18 training | {train['baseline']['images_per_s']:.1f} | "
                     f"{train['ours']['images_per_s']:.1f} | {train['speedup']:.2f}x |")
    elif train:
        lines.append(f"| MoCo training | {train.get('skipped', '')} | | |")
    return lines


FORMATS = {"bench_replay": replay, "bench_update": update, "bench_env": env,
           "bench_pretrain": pretrain}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    out: list[str] = []
    for name in args.files:
        path = Path(name)
        data = json.loads(path.read_text())
        out += [f"### {data['benchmark']}", ""] + FORMATS[data["benchmark"]](data, path) + [""]
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
