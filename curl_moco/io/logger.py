"""Metrics to CSV files (one per group, e.g. ``train.csv``, ``eval.csv``) and TensorBoard.

Every row is flushed when written, so a killed run keeps all rows up to the moment it died.
When a run resumes from a checkpoint taken at step S, rows with ``step > S`` are dropped from the
CSV files (and purged from TensorBoard): they are logged again by the resumed run, exactly once.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path

log = logging.getLogger("curl_moco")


class Logger:
    """CSV + TensorBoard scalar logger rooted at ``run_dir``."""

    def __init__(self, run_dir: str | os.PathLike, *, resume_step: int | None = None,
                 tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._headers: dict[str, list[str]] = {}
        if resume_step is not None:
            for csv_path in sorted(self.run_dir.glob("*.csv")):
                dropped = _truncate_after(csv_path, resume_step)
                if dropped:
                    log.info("resume: dropped %d row(s) after step %d from %s",
                             dropped, resume_step, csv_path.name)
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge)

    def csv_path(self, group: str) -> Path:
        return self.run_dir / f"{group}.csv"

    def log(self, group: str, step: int, metrics: dict[str, float]) -> None:
        """Append one row ``{"step": step, **metrics}`` to ``<group>.csv`` and to TensorBoard."""
        row = {"step": int(step)}
        row.update({key: _scalar(value) for key, value in metrics.items()})
        path = self.csv_path(group)
        header = self._header(group, path)
        if header is None or any(key not in header for key in row):
            header = _merge(header, list(row))
            _rewrite_with_header(path, header)
            self._headers[group] = header
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=header).writerow(row)
        if self._writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(f"{group}/{key}", value, int(step))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _header(self, group: str, path: Path) -> list[str] | None:
        if group not in self._headers and path.is_file() and path.stat().st_size > 0:
            with open(path, newline="") as f:
                self._headers[group] = next(csv.reader(f))
        return self._headers.get(group)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """All rows of a metrics CSV as dictionaries of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _scalar(value) -> float | int | str:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    return value


def _merge(header: list[str] | None, keys: list[str]) -> list[str]:
    merged = list(header or [])
    merged += [key for key in keys if key not in merged]
    return merged


def _rewrite_with_header(path: Path, header: list[str]) -> None:
    rows = read_csv(path) if path.is_file() and path.stat().st_size > 0 else []
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _truncate_after(path: Path, step: int) -> int:
    if path.stat().st_size == 0:
        return 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    kept = [row for row in rows if row.get("step") not in (None, "") and int(row["step"]) <= step]
    if len(kept) == len(rows):
        return 0
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, path)
    return len(rows) - len(kept)
