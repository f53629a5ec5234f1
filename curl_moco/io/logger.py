"""Metrics through a list of sinks: CSV files (one per group, e.g. ``train.csv``, ``eval.csv``),
TensorBoard, or anything with ``write(group, step, row)``, ``flush()`` and ``close()``.

Sinks may also implement ``write_config(config, step)`` (the run's resolved config),
``write_video(tag, step, frames, fps)`` (:class:`TensorBoardSink` does both) and
``write_video_file(group, step, path)`` (an mp4 the trainer wrote; the W&B sink).

The trainers log through :class:`Logger` and never name a sink: a library user adds one (a
dashboard, a database) by passing it to ``train(cfg, sinks=[...])``.

Every row carries the step counter under a name that states its unit
(:attr:`Logger.step_column`: ``env_steps`` for CURL-SAC, ``optimizer_steps`` for pretraining).
CSV rows are flushed when written, so a killed run keeps all rows up to the moment it died. When
a run resumes from a checkpoint taken at step S, rows logged after S are dropped from the CSV
files (and purged from TensorBoard): they are logged again by the resumed run, exactly once. A
CSV written under older column names (``renames``: old name -> new name, e.g. ``step`` ->
``env_steps``) is rewritten under the new names before the first new row, values kept, so a
resumed old run stays one table. A run that names its ``groups`` touches only their files, so a
CSV of the user's in the run folder is never rewritten; without ``groups`` every CSV with the
step column holding whole numbers counts as one of the run's."""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from curl_moco.io.atomic import atomic_write, remove_stale_temp_files

log = logging.getLogger("curl_moco")

Row = dict[str, "float | int | str"]


#: Name of the step counter in rows when none is given.
DEFAULT_STEP_COLUMN = "step"


class MetricSink(Protocol):
    """Where logged rows go. ``row`` holds the step counter (under the logger's
    ``step_column``) and the metrics as Python scalars."""

    def write(self, group: str, step: int, row: Row) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Logger:
    """Sends each row to every sink; ``step_column`` names the step counter in every row."""

    def __init__(self, sinks: Sequence[MetricSink],
                 step_column: str = DEFAULT_STEP_COLUMN) -> None:
        self.sinks = list(sinks)
        self.step_column = step_column

    @classmethod
    def to_folder(cls, run_dir: str | os.PathLike, *, resume_step: int | None = None,
                  tensorboard: bool = True, sinks: Sequence[MetricSink] = (),
                  step_column: str = DEFAULT_STEP_COLUMN,
                  renames: dict[str, str] | None = None,
                  groups: Sequence[str] | None = None) -> Logger:
        """CSV files in ``run_dir`` (+ TensorBoard in ``run_dir/tb``) and ``sinks``."""
        return cls([*default_sinks(run_dir, resume_step, tensorboard=tensorboard,
                                   step_column=step_column, renames=renames, groups=groups),
                    *sinks], step_column)

    def log(self, group: str, step: int, metrics: dict[str, float]) -> None:
        """Log one row ``{step_column: step, **metrics}`` of ``group`` (tensors become
        scalars)."""
        row: Row = {self.step_column: int(step)}
        row.update({key: _scalar(value) for key, value in metrics.items()})
        for sink in self.sinks:
            sink.write(group, int(step), row)

    def video_file(self, group: str, step: int, path: str | os.PathLike) -> None:
        """Hand a written mp4 file to the sinks that take one (``write_video_file(group, step,
        path)``, e.g. :class:`~curl_moco.io.wandb_sink.WandbSink`); the others ignore it."""
        for sink in self.sinks:
            if hasattr(sink, "write_video_file"):
                sink.write_video_file(group, int(step), path)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def config(self, config: dict[str, Any], step: int = 0) -> None:
        """Hand the run's resolved config to the sinks that record one (``write_config``)."""
        for sink in self.sinks:
            if hasattr(sink, "write_config"):
                sink.write_config(config, step)

    def video(self, tag: str, step: int, frames: Sequence[Any], fps: float) -> None:
        """Hand a video (frames ``(H, W, 3)`` uint8) to the sinks that show one
        (``write_video``)."""
        for sink in self.sinks:
            if hasattr(sink, "write_video"):
                sink.write_video(tag, step, frames, fps)

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_sinks(run_dir: str | os.PathLike, resume_step: int | None = None, *,
                  tensorboard: bool = True, step_column: str = DEFAULT_STEP_COLUMN,
                  renames: dict[str, str] | None = None,
                  groups: Sequence[str] | None = None) -> list[MetricSink]:
    """The sinks of every run: :class:`CsvSink` and, when ``tensorboard``,
    :class:`TensorBoardSink` (``resume_step``: drop rows logged after it; None keeps all)."""
    sinks: list[MetricSink] = [CsvSink(run_dir, resume_step, step_column=step_column,
                                       renames=renames, groups=groups)]
    if tensorboard:
        sinks.append(TensorBoardSink(Path(run_dir) / "tb", resume_step, step_column))
    return sinks


class CsvSink:
    """``<run_dir>/<group>.csv``, one column per metric (new metrics widen the file).

    ``step_column`` is the step counter's column (rows after ``resume_step`` are dropped);
    ``renames`` maps older column names to current ones: an existing file with an old name is
    rewritten under the new name (values kept) before anything else touches it. ``groups``
    names every group the run logs: only their files are renamed and cut on resume, and a row
    of another group is refused (ValueError); None takes every ``*.csv`` with the step column
    as the run's."""

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None, *,
                 step_column: str = DEFAULT_STEP_COLUMN,
                 renames: dict[str, str] | None = None,
                 groups: Sequence[str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.step_column = step_column
        self.renames = dict(renames or {})
        self.groups = None if groups is None else tuple(groups)
        self._headers: dict[str, list[str]] = {}
        remove_stale_temp_files(self.run_dir, _csv_names(self.groups))  # of a killed rewrite
        for csv_path in csv_files(self.run_dir, self.groups):
            renamed, dropped = _update_csv(csv_path, self.renames, resume_step, step_column)
            if renamed:
                log.info("%s: renamed old column names (%s)", csv_path.name,
                         ", ".join(f"{a} -> {b}" for a, b in self.renames.items()))
            if dropped:
                log.info("resume: dropped %d row(s) after step %d from %s",
                         dropped, resume_step, csv_path.name)

    def write(self, group: str, step: int, row: Row) -> None:
        if self.groups is not None and group not in self.groups:
            raise ValueError(f"group {group!r} is not one of this run's CSV groups "
                             f"{list(self.groups)}")
        path = self.run_dir / f"{group}.csv"
        try:
            header = self._header(group, path)
            if header is None or any(key not in header for key in row):
                header = _merge(header, list(row))
                _rewrite_with_header(path, header)
                self._headers[group] = header
            with open(path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=header).writerow(row)
        except OSError as error:  # a full disk raised by write() names no file: name it
            if error.filename is not None:
                raise
            raise OSError(error.errno, error.strerror, str(path)) from error

    def flush(self) -> None:  # every row is written through
        pass

    def close(self) -> None:
        pass

    def _header(self, group: str, path: Path) -> list[str] | None:
        if group not in self._headers and path.is_file() and path.stat().st_size > 0:
            _update_csv(path, self.renames)  # a file that appeared after the constructor
            with open(path, newline="", encoding=CSV_ENCODING) as f:
                self._headers[group] = next(csv.reader(f))
        return self._headers.get(group)


class TensorBoardSink:
    """TensorBoard scalars ``<group>/<metric>`` in ``log_dir`` (finite numbers only)."""

    def __init__(self, log_dir: str | os.PathLike, resume_step: int | None = None,
                 step_column: str = DEFAULT_STEP_COLUMN) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.step_column = step_column
        purge = None if resume_step is None else resume_step + 1
        self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)

    def write(self, group: str, step: int, row: Row) -> None:
        for key, value in row.items():
            if key != self.step_column and isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(f"{group}/{key}", value, step)

    def write_config(self, config: dict[str, Any], step: int = 0) -> None:
        """The config as text (a JSON block, tab "Text") and as hyperparameters (tab "HParams",
        one column per field; the evaluation return as the metric)."""
        from torch.utils.tensorboard.summary import hparams

        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        self._writer.add_text("config", "```\n" + text + "\n```", step)
        values = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
                  for key, value in sorted(config.items())}
        for summary in hparams(values, {"eval/episode_reward": 0.0}):
            self._writer.file_writer.add_summary(summary, step)

    def write_video(self, tag: str, step: int, frames: Sequence[Any], fps: float) -> None:
        """An animated GIF of ``frames`` (``(H, W, 3)`` uint8) in the "Images" tab (the GIF
        TensorBoard itself shows; no moviepy needed)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        from curl_moco.io.video import gif_bytes

        first = frames[0]
        image = Summary.Image(height=int(first.shape[0]), width=int(first.shape[1]),
                              colorspace=3, encoded_image_string=gif_bytes(frames, fps))
        self._writer.file_writer.add_summary(
            Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


#: Reading encoding of metrics CSVs: UTF-8, ignoring the byte-order mark a spreadsheet program
#: adds when it saves the file (it would otherwise glue itself to the first column's name).
CSV_ENCODING = "utf-8-sig"


def csv_files(run_dir: str | os.PathLike, groups: Sequence[str] | None = None) -> list[Path]:
    """The CSV files of ``groups`` that exist in ``run_dir``, sorted (None: every ``*.csv``)."""
    return sorted({p for name in _csv_names(groups) for p in Path(run_dir).glob(name)})


def _csv_names(groups: Sequence[str] | None) -> tuple[str, ...]:
    return ("*.csv",) if groups is None else tuple(f"{glob.escape(g)}.csv" for g in groups)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """All rows of a metrics CSV as dictionaries of strings."""
    with open(path, newline="", encoding=CSV_ENCODING) as f:
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


def _write_csv(path: Path, header: list[str], rows: list[dict[str, str]] | list[list[str]]
               ) -> None:
    """Replace ``path`` atomically by ``header`` and ``rows`` (dictionaries, or lists in
    ``header``'s order): a run killed mid-rewrite leaves the previous complete file."""
    text = io.StringIO(newline="")
    if rows and isinstance(rows[0], dict):
        writer = csv.DictWriter(text, fieldnames=header)
        writer.writeheader()
    else:
        writer = csv.writer(text)
        writer.writerow(header)
    writer.writerows(rows)
    atomic_write(path, text.getvalue())


def _rewrite_with_header(path: Path, header: list[str]) -> None:
    rows = read_csv(path) if path.is_file() and path.stat().st_size > 0 else []
    _write_csv(path, header, rows)


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding=CSV_ENCODING) as f:
        reader = csv.reader(f)
        return next(reader, []), list(reader)


def _renamed_header(header: list[str], renames: dict[str, str]) -> list[str]:
    """``header`` with the old names of ``renames`` replaced by the new ones; unchanged when it
    holds none, or both an old name and its new one (left alone rather than guessed at)."""
    if not any(name in renames for name in header) or any(
            renames[name] in header for name in header if name in renames):
        return header
    return [renames.get(name, name) for name in header]


def _whole_number(text: str) -> int | None:
    """``text`` as an int when it writes one (``"1000"``), else None."""
    try:
        return int(text)
    except ValueError:
        return None


def _update_csv(path: Path, renames: dict[str, str], resume_step: int | None = None,
                step_column: str = DEFAULT_STEP_COLUMN) -> tuple[bool, int]:
    """Rename old columns of ``path`` and, when ``resume_step`` is set, drop the rows logged
    after it, without a step, or cut short (a write torn by a full disk), in one read and at
    most one atomic rewrite. A CSV without ``step_column``, or with a value in it that is not a
    whole number, is not a metrics file of this run and is left as it is. Returns (renamed,
    rows dropped)."""
    if path.stat().st_size == 0:
        return False, 0
    header, rows = _read_table(path)
    new_header = _renamed_header(header, renames) if renames else header
    if step_column not in new_header:
        return False, 0
    column = new_header.index(step_column)
    texts = [row[column] if len(row) > column else "" for row in rows]
    steps = [_whole_number(text) for text in texts]
    if any(step is None and text != "" for step, text in zip(steps, texts)):
        log.warning("%s: its %r column holds values that are not step counts; left as it is",
                    path.name, header[column])  # the name in the file, before any rename
        return False, 0
    renamed = new_header != header
    kept = rows
    if resume_step is not None:
        kept = [row for step, row in zip(steps, rows)
                if len(row) >= len(new_header) and step is not None and step <= resume_step]
    if renamed or len(kept) != len(rows):
        _write_csv(path, new_header, kept)
    return renamed, len(rows) - len(kept)
