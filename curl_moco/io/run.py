"""One run folder for both trainers: whether a folder may be continued, and how a run writes its
config, its checkpoint and its metrics there.

Layout (both trainers)::

    <run_dir>/config.json      the resolved config (written at every start)
    <run_dir>/checkpoint.pt    the run's one checkpoint (versioned, checksummed, atomic)
    <run_dir>/<group>.csv, tb/ metrics (:mod:`curl_moco.io.logger` sinks)
    ...                        the trainer's own outputs (videos/, encoder.pt, run.json)

Resume convention: with ``resume`` on, a folder holding a checkpoint of the same kind is
continued when its config equals this run's in every field except the trainer's
``may_change`` fields (devices, speed knobs, logging, intervals). A field missing from a saved
config (added to the dataclass later) counts as its default. With ``resume`` off a folder that
holds a checkpoint is refused, never overwritten. A folder with a ``config.json`` but no
checkpoint yet (a run stopped before its first checkpoint) must hold the same run too (its rows
are dropped and logged again); a folder holding a run's logs, videos or exports without a
checkpoint is refused with ``resume`` off, and without a ``config.json`` even with it on.

One writer per folder: :meth:`RunDir.claim` (and :meth:`RunDir.prepare`) take the folder's
:class:`~curl_moco.io.lock.FolderLock` until :meth:`RunDir.release` (or the process's end); a
second run on the folder is refused naming the first's PID, by :meth:`RunDir.check` already.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from curl_moco.io.atomic import remove_stale_temp_files
from curl_moco.io.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    check_compatible,
    latest_checkpoint,
    load_checkpoint,
    read_header,
    save_checkpoint,
)
from curl_moco.io.checks import quote
from curl_moco.io.config import config_to_dict, save_config
from curl_moco.io.errors import UsageError
from curl_moco.io.lock import FolderLock
from curl_moco.io.logger import Logger, MetricSink, default_sinks

CONFIG_NAME = "config.json"
#: What a run writes that cannot be made again without training: logs, videos, exports.
RUN_DATA = ("*.csv", "tb", "videos", "encoder.pt", "backbone_torchvision.pt")


class RunDir:
    """The run folder ``path`` of a run of config ``cfg`` (a dataclass) with checkpoints of
    ``kind``. ``extra`` adds values that identify the run but are not config fields (e.g. the
    world size); ``may_change`` names the fields a resumed run may change. ``writer=False`` (the
    other ranks of a distributed run) neither locks nor writes the folder."""

    def __init__(self, path: str | os.PathLike, cfg: Any, *, kind: str,
                 may_change: Iterable[str], extra: dict[str, Any] | None = None,
                 writer: bool = True) -> None:
        self.path = Path(path)
        self.kind = kind
        self.config = {**config_to_dict(cfg), **(extra or {})}
        self._cfg = cfg
        may_change = frozenset(may_change)
        self.identity = [key for key in self.config if key not in may_change]
        # config.json holds the config fields only: the extra values are in checkpoints.
        self._config_identity = [key for key in self.identity if key not in (extra or {})]
        self.writer = writer
        self.lock = FolderLock(self.path, "run_dir")
        self._created: Path | None = None
        self._defaults = {f.name: f.default for f in dataclasses.fields(cfg)
                          if f.default is not dataclasses.MISSING}

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    def check(self, resume: bool) -> Path | None:
        """Before any work: the checkpoint to continue from, or None for a fresh run. Raises
        :class:`UsageError` / :class:`CheckpointError` naming ``run_dir`` and the first field
        that differs when the folder holds another run (or any checkpoint with ``resume`` off),
        or when another process is writing it (the folder's lock, held while checking; a run
        holds it from :meth:`claim` on)."""
        checking = self.writer and self.path.is_dir() and not self.lock.held
        if checking:
            self.lock.acquire()
        try:
            return self._check(resume)
        finally:
            if checking:
                self.lock.release()

    def _check(self, resume: bool) -> Path | None:
        where = f"run_dir={quote(self.path)}"
        ckpt = latest_checkpoint(self.path)
        if ckpt is not None:
            if not resume:
                raise UsageError(f"{where} already holds a run with a checkpoint; use another "
                                 "--run-dir, delete it, or drop --no-resume to continue it")
            header = read_header(ckpt)  # CheckpointError for a foreign or damaged file
            if header["kind"] != self.kind:
                raise CheckpointError(f"{ckpt} is a {header['kind']!r} checkpoint, not a "
                                      f"{self.kind!r} run")
            self.check_same_run(header["config"], what=f"{where} holds a run that")
            return ckpt
        data = self.run_data()
        if data and not resume:
            raise UsageError(f"{where} holds a run's {', '.join(data)} but no checkpoint; "
                             "--no-resume would overwrite them: choose another --run-dir, or "
                             "move them away")
        if self.config_path.is_file():
            try:
                saved = json.loads(self.config_path.read_text())
            except json.JSONDecodeError as error:
                raise CheckpointError(f"{self.config_path} is not valid JSON: {error}") \
                    from error
            check_compatible({**self._defaults, **saved}, self.config, self._config_identity,
                             what=f"{where} holds a run that")
        elif data:
            raise UsageError(f"{where} holds {', '.join(data)} but neither a checkpoint nor "
                             f"{CONFIG_NAME}, so it cannot be continued and would be "
                             "overwritten: choose another --run-dir, or move them away")
        return None

    def run_data(self) -> list[str]:
        """Names of the logs, videos and exports in the folder (``RUN_DATA``), sorted."""
        if not self.path.is_dir():
            return []
        return sorted({p.name for pattern in RUN_DATA for p in self.path.glob(pattern)})

    def check_same_run(self, saved: dict[str, Any], what: str = "checkpoint") -> None:
        """:class:`CheckpointError` naming the first identifying field that differs."""
        check_compatible({**self._defaults, **saved}, self.config, self.identity, what=what)

    def load(self, path: Path | None = None) -> dict[str, Any]:
        """The payload of the run's checkpoint, after checking its kind, integrity and config."""
        path = path or self.checkpoint_path
        loaded = load_checkpoint(path, kind=self.kind, map_location="cpu")
        self.check_same_run(loaded["config"], what=f"checkpoint {path}")
        return loaded["payload"]

    def prepare(self, outputs: Sequence[str] = ()) -> None:
        """Create and lock the folder, clear temporary files of interrupted writes (of the
        checkpoint and of ``outputs``) and write ``config.json``. Call once every start-up check
        has passed: nothing is written before."""
        if not self.writer:
            return
        self.claim()
        remove_stale_temp_files(self.path, (CHECKPOINT_NAME, CONFIG_NAME, "run.json", *outputs))
        save_config(self._cfg, self.config_path)

    def claim(self) -> None:
        """Lock the folder now, creating it if needed (a second run starting at the same moment
        is then refused before its own work); :meth:`release` removes a folder created here
        that is still empty."""
        if self.writer and not self.lock.held:
            if self._created is None:  # the outermost folder this claim creates
                probe = self.path.absolute()
                while not probe.exists() and probe.parent != probe:
                    self._created, probe = probe, probe.parent
            self.lock.acquire()

    def release(self) -> None:
        """Free the folder for other runs (no-op when not held); folders created by
        :meth:`claim` that are still empty are removed (a refused run leaves nothing behind)."""
        self.lock.release()
        if self._created is not None:
            folder = self.path.absolute()
            while folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                if folder == self._created:
                    break
                folder = folder.parent
        self._created = None

    def save(self, payload: dict[str, Any]) -> Path:
        """Atomically write the run's checkpoint (payload: tensors and primitives only)."""
        return save_checkpoint(self.checkpoint_path, payload, kind=self.kind, config=self.config)

    def open_logger(self, resumed_step: int | None, *, tensorboard: bool,
                    sinks: Sequence[MetricSink] = (), step_column: str = "step",
                    renames: dict[str, str] | None = None,
                    groups: Sequence[str] | None = None) -> Logger:
        """The run's metric logger: CSV (+ TensorBoard) and any extra ``sinks``. Rows after
        ``resumed_step`` (all rows for a fresh run) are dropped: they are logged again.
        ``step_column`` names the step counter; ``renames`` upgrades older CSV column names;
        ``groups`` names every group the run logs (only their CSV files are the run's)."""
        resume_step = -1 if resumed_step is None else resumed_step
        return Logger([*default_sinks(self.path, resume_step, tensorboard=tensorboard,
                                      step_column=step_column, renames=renames,
                                      groups=groups), *sinks], step_column)
