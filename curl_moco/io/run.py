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
checkpoint yet (a run stopped before its first checkpoint) must hold the same run too.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from curl_moco.io.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    check_compatible,
    latest_checkpoint,
    load_checkpoint,
    read_header,
    remove_stale_temp_files,
    save_checkpoint,
)
from curl_moco.io.config import config_to_dict, save_config
from curl_moco.io.errors import UsageError
from curl_moco.io.logger import Logger, MetricSink, default_sinks

CONFIG_NAME = "config.json"


class RunDir:
    """The run folder ``path`` of a run of config ``cfg`` (a dataclass) with checkpoints of
    ``kind``. ``extra`` adds values that identify the run but are not config fields (e.g. the
    world size); ``may_change`` names the fields a resumed run may change."""

    def __init__(self, path: str | os.PathLike, cfg: Any, *, kind: str,
                 may_change: Iterable[str], extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.kind = kind
        self.config = {**config_to_dict(cfg), **(extra or {})}
        self._cfg = cfg
        may_change = frozenset(may_change)
        self.identity = [key for key in self.config if key not in may_change]
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
        that differs when the folder holds another run (or any checkpoint with ``resume`` off).
        """
        where = f"run_dir={str(self.path)!r}"
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
        if self.config_path.is_file():
            try:
                saved = json.loads(self.config_path.read_text())
            except json.JSONDecodeError as error:
                raise CheckpointError(f"{self.config_path} is not valid JSON: {error}") \
                    from error
            self.check_same_run(saved, what=f"{where} holds a run that")
        return None

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
        """Create the folder, clear temporary files of interrupted writes (of the checkpoint and
        of ``outputs``) and write ``config.json``."""
        self.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.path, (CHECKPOINT_NAME, *outputs))
        tmp = save_config(self._cfg, self.path / f".{CONFIG_NAME}.tmp")
        os.replace(tmp, self.config_path)  # other ranks may be reading it (check)

    def save(self, payload: dict[str, Any]) -> Path:
        """Atomically write the run's checkpoint (payload: tensors and primitives only)."""
        return save_checkpoint(self.checkpoint_path, payload, kind=self.kind, config=self.config)

    def open_logger(self, resumed_step: int | None, *, tensorboard: bool,
                    sinks: Sequence[MetricSink] = ()) -> Logger:
        """The run's metric logger: CSV (+ TensorBoard) and any extra ``sinks``. Rows after
        ``resumed_step`` (all rows for a fresh run) are dropped: they are logged again."""
        resume_step = -1 if resumed_step is None else resumed_step
        return Logger([*default_sinks(self.path, resume_step, tensorboard=tensorboard), *sinks])
