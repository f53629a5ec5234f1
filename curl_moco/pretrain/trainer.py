"""MoCo pretraining loop: one process on CPU/GPU, or one process per GPU under torchrun (DDP).

Per step: uint8 batch from CPU workers -> device -> two augmented views -> ``MoCo`` loss ->
optimiser step, with lr and key momentum set from per-step schedules. Every epoch (rank 0): kNN
monitor on the held-out split, CSV/TensorBoard rows, checkpoint. A checkpoint holds model (query
and key encoders, queue), optimiser, schedule position, epoch/step and every rank's RNG states,
so a run killed at any moment resumes from its last checkpoint and then repeats exactly what the
uninterrupted run would have done (data order comes from ``(seed, epoch)``; augmentation from
the restored RNG).

``batch_size`` is the global batch: each of the N ranks takes ``batch_size / N`` images, so the
same command gives the same optimisation under ``torchrun --nproc_per_node N``.

Ctrl-C or SIGTERM (:mod:`curl_moco.io.interrupt`): the ranks agree after every step (an
all-reduce of the stop flag), finish that step, write a checkpoint there and raise
:class:`~curl_moco.io.interrupt.TrainingInterrupted`; the resumed run continues exactly.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from curl_moco.io.checkpoint import CheckpointError
from curl_moco.io.checks import listing
from curl_moco.io.config import config_to_dict
from curl_moco.io.console import header
from curl_moco.io.divergence import TrainingDiverged, diverged, first_nonfinite_tensor
from curl_moco.io.errors import UsageError, usage_errors
from curl_moco.io.interrupt import StopSignals, TrainingInterrupted, ignore_interrupts_in_worker
from curl_moco.io.logger import Logger, MetricSink, csv_files
from curl_moco.io.run import RunDir
from curl_moco.io.run_record import RunRecord, device_line
from curl_moco.pretrain.config import RESUMABLE_CHANGES, MocoConfig, default_run_dir, validate
from curl_moco.pretrain.data import (
    ImageFolderDataset,
    classes_not_held_out,
    collate_samples,
    split_indices,
)
from curl_moco.pretrain.distributed import (
    DistContext,
    RefusedByOtherRank,
    all_gather_objects,
    all_reduce_max,
    all_reduce_sum,
    cleanup_distributed,
    init_distributed,
    start_together,
)
from curl_moco.pretrain.evaluate import extract_features, knn_accuracy
from curl_moco.pretrain.export import (
    export_backbone,
    export_config,
    export_torchvision,
    torchvision_file_name,
)
from curl_moco.pretrain.moco import MoCo
from curl_moco.pretrain.optim import build_optimizer, learning_rate, momentum_at
from curl_moco.pretrain.transforms import EvalTransform, ViewAugment
from curl_moco.runtime import (
    capture_rng_state,
    launched_world_size,
    resolve_amp,
    resolve_device,
    restore_rng_state,
    seed_everything,
)

log = logging.getLogger("curl_moco")
#: The metric groups the trainer logs: ``<group>.csv`` in the run folder.
LOG_GROUPS = ("train", "epoch")
#: The step counter of every CSV row (optimizer steps, all ranks together), and its older name
#: (a resumed old run's CSV files are rewritten under the new one).
STEP_COLUMN = "optimizer_steps"
LEGACY_COLUMNS = {"step": STEP_COLUMN}

CHECKPOINT_KIND = "moco"
@dataclass
class PretrainResult:
    """What a finished pretraining run produced (paths are rank 0's)."""

    run_dir: Path
    step: int
    epochs: int
    metrics: dict[str, float]
    checkpoint: Path
    config_path: Path
    encoder: Path | None = None
    csv_paths: list[Path] = field(default_factory=list)
    tensorboard_dir: Path | None = None
    resumed_from: int | None = None
    wall_s: float = 0.0


# ---------------------------------------------------------------- the run
class Trainer:
    """One pretraining run on one rank: data, model, optimiser, loop, checkpoints (see
    :func:`train`, which also joins and leaves the process group)."""

    def __init__(self, cfg: MocoConfig, ctx: DistContext,
                 sinks: Sequence[MetricSink] = ()) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.device = ctx.device
        self.run_folder = RunDir(default_run_dir(cfg), cfg, kind=CHECKPOINT_KIND,
                          may_change=RESUMABLE_CHANGES, extra={"world_size": ctx.world_size},
                          writer=ctx.is_main)
        self.run_dir, self.ckpt_path = self.run_folder.path, self.run_folder.checkpoint_path
        self.config_dict = self.run_folder.config
        self.sinks = list(sinks)
        resume_from = self.run_folder.check(cfg.resume)  # before any work

        # Data (decoded on CPU workers; augmented on the device).
        self.dataset = ImageFolderDataset(cfg.data, cfg.load_size, frame_stack=cfg.frame_stack)
        if cfg.knn_every_epochs and len(self.dataset.classes) < 2:
            raise UsageError(
                f"data={cfg.data!r} has a single class folder ({self.dataset.classes[0]!r}): "
                "the kNN monitor needs labelled classes; add class folders or set "
                "--knn-every-epochs 0")
        if cfg.val_data:
            self.val_set = ImageFolderDataset(cfg.val_data, cfg.load_size,
                                              frame_stack=cfg.frame_stack, setting="val_data")
            if self.val_set.classes != self.dataset.classes:
                extra = sorted(set(self.val_set.classes) - set(self.dataset.classes))
                missing = sorted(set(self.dataset.classes) - set(self.val_set.classes))
                raise UsageError(
                    f"val_data={cfg.val_data!r} has other classes than data={cfg.data!r}: "
                    f"only in val_data: {listing(extra) or 'none'}; only in data: "
                    f"{listing(missing) or 'none'}")
            self.train_idx = np.arange(len(self.dataset))
            self.val_idx = np.arange(len(self.val_set))
        else:
            self.val_set = self.dataset
            self.train_idx, self.val_idx = split_indices(self.dataset, cfg.val_fraction, cfg.seed)
        self.train_set = Subset(self.dataset, self.train_idx.tolist())
        if ctx.is_main:
            self._note_settings_that_do_little()
        self.rank_batch = cfg.batch_size // ctx.world_size
        self.sampler = DistributedSampler(self.train_set, num_replicas=ctx.world_size,
                                          rank=ctx.rank, shuffle=True, seed=cfg.seed,
                                          drop_last=True)
        self.steps_per_epoch = len(self.sampler) // self.rank_batch
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        if self.steps_per_epoch == 0:
            raise UsageError(f"batch_size={cfg.batch_size} is larger than the training split "
                             f"({len(self.train_idx)} items over {ctx.world_size} rank(s))")
        self.total_steps = self.steps_per_epoch * cfg.epochs

        # Model, identical on every rank (same seed), then per-rank augmentation randomness.
        seed_everything(cfg.seed)
        self.model = MoCo.from_config(cfg, device=self.device, world_size=ctx.world_size)
        if cfg.channels_last and cfg.arch != "pixel":
            self.model.to(memory_format=torch.channels_last)
        normalize = cfg.arch != "pixel"
        channels = 3 * cfg.frame_stack
        self.augment = ViewAugment(cfg.augment, cfg.crop_size, channels, normalize,
                                   cfg.augment_backend, cfg.crop_min).to(self.device)
        self.eval_transform = EvalTransform(cfg.crop_size, channels, normalize).to(self.device)
        self.base_lr = cfg.lr * (cfg.batch_size / cfg.lr_scale_batch if cfg.lr_scale_batch else 1)
        self.optimizer = build_optimizer(cfg.optimizer, self.model.parameters(), lr=self.base_lr,
                                         momentum=cfg.sgd_momentum,
                                         weight_decay=cfg.weight_decay)
        self.net: nn.Module = self.model  # wrapped in DDP by run(): no collective here
        seed_everything(cfg.seed + 1 + 1000 * ctx.rank)
        self.amp, self.amp_reason = resolve_amp(cfg.amp, self.device, what="bf16 autocast")

        self.epoch, self.step_in_epoch, self.step = 0, 0, 0
        self.skipped_total = 0
        # This rank's running sums over the current epoch: loss, accuracy, steps, skipped files.
        self.epoch_sums = torch.zeros(4, dtype=torch.float64)
        self.last: dict[str, float] = {}
        self.stop = StopSignals()  # installed while run() trains
        self.resumed = self._resume(resume_from) if resume_from is not None else False
        self._resumed_step = self.step if self.resumed else None
        #: The entry point's module when one runs this trainer (recorded in run.json).
        self.entry_point: str | None = None
        self._saved_step = self.step if self.resumed else -1
        self.run_folder.claim()  # rank 0: one writer from here on (refused inside start_together)

    def _note_settings_that_do_little(self) -> None:
        """Warn about a kNN monitor with nothing (or part of the classes) to test and a queue
        longer than the training split: both pass the checks but do less than asked."""
        cfg = self.cfg
        if cfg.knn_every_epochs and not len(self.val_idx):
            log.warning("kNN monitor skipped: the held-out split is empty (val_fraction=%s and "
                        "no val_data%s); set --val-fraction > 0 or --val-data, or "
                        "--knn-every-epochs 0", cfg.val_fraction,
                        "" if cfg.val_fraction == 0 else
                        ": every class has a single image or episode")
        elif cfg.knn_every_epochs and not cfg.val_data:
            untested = classes_not_held_out(self.dataset, self.val_idx)
            if untested:
                log.warning("kNN monitor: %d class(es) have a single image or episode and so "
                            "none held out (%s): the monitor does not test them",
                            len(untested), listing(untested))
        if cfg.queue_size > len(self.train_idx):
            log.warning("queue_size=%d is larger than the training split (%d items): the queue "
                        "holds keys of the same images from earlier steps, each query's own "
                        "among them, as negatives; use queue_size <= %d (a multiple of "
                        "batch_size=%d) or more data", cfg.queue_size, len(self.train_idx),
                        len(self.train_idx), cfg.batch_size)

    # ------------------------------------------------------------ checkpoints
    def _resume(self, path: Path) -> bool:
        payload = self.run_folder.load(path)
        if payload["train_items"] != len(self.train_idx):
            raise CheckpointError(
                f"checkpoint was made with {payload['train_items']} training items, this run "
                f"has {len(self.train_idx)} (different data={self.cfg.data!r}?)")
        try:
            self.model.load_state_dict(payload["model"], strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"{path}: model weights do not fit: {error}") from error
        self.optimizer.load_state_dict(payload["optimizer"])
        self.epoch, self.step_in_epoch = payload["epoch"], payload["step_in_epoch"]
        self.step, self.skipped_total = payload["step"], payload["skipped_total"]
        self.last = dict(payload.get("last", {}))
        mine = payload["ranks"][self.ctx.rank]
        restore_rng_state(mine["rng"])
        self.epoch_sums = mine["epoch_sums"].clone()
        if self.ctx.is_main:
            log.info("resumed %s at epoch %d, step %d", path, self.epoch, self.step)
        return True

    def save(self) -> None:
        """Checkpoint the current position (collective: every rank contributes its RNG state)."""
        bad = first_nonfinite_tensor(self.model.state_dict().items())
        if bad is not None:  # never replace the last good checkpoint with a diverged one
            raise self._diverged(f"the weights {bad} hold inf/NaN")
        ranks = all_gather_objects({"rng": capture_rng_state(),
                                    "epoch_sums": self.epoch_sums.clone()})
        self._saved_step = self.step
        if not self.ctx.is_main:
            return
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"step": self.step, "total_steps": self.total_steps,
                          "base_lr": self.base_lr},
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "step": self.step,
            "ranks": ranks, "train_items": len(self.train_idx),
            "skipped_total": self.skipped_total, "last": self.last,
        }
        self.run_folder.save(payload)

    def _diverged(self, what: str) -> TrainingDiverged:
        """The error of a diverged run at the current step (the last checkpoint is kept)."""
        epochs = self.epoch + self.step_in_epoch / self.steps_per_epoch
        hint = f"the effective lr after batch scaling was {self.base_lr:.4g}"
        if self.cfg.temperature < 0.05:
            hint += f"; temperature={self.cfg.temperature} also makes the logits large"
        kept = self.ckpt_path if self._saved_step >= 0 else None
        return diverged(self.cfg, "lr", hint, f"at step {self.step} (epoch {epochs:.2f})",
                        what, kept)

    def _stop_agreed(self) -> bool:
        """Whether any rank was asked to stop (collective under DDP: every rank calls it at the
        same points, so that all stop after the same step and report the same signal)."""
        signum = torch.tensor([self.stop.signum or 0])
        if self.ctx.distributed:
            signum = all_reduce_max(signum.to(self.device)).cpu()
        self._agreed_signum = int(signum.item())
        return self._agreed_signum > 0

    def _interrupt(self) -> None:
        """Checkpoint (collective; unless this step was just saved) and raise
        :class:`TrainingInterrupted` on every rank."""
        if self._saved_step != self.step:
            self.save()
        epochs = self.epoch + self.step_in_epoch / self.steps_per_epoch
        raise TrainingInterrupted(
            self._agreed_signum, f"at step {self.step} (epoch {epochs:.2f} of {self.cfg.epochs})",
            self.ckpt_path, self.run_folder.config_path,
            () if self.cfg.resume else ("--resume",))

    # ------------------------------------------------------------ evaluation
    def knn_monitor(self) -> float:
        """kNN accuracy of the query backbone on the held-out split (bank: training items)."""
        bank_idx = self.train_idx
        if len(bank_idx) > self.cfg.knn_bank_size:
            rng = np.random.default_rng(self.cfg.seed)
            bank_idx = np.sort(rng.choice(bank_idx, self.cfg.knn_bank_size, replace=False))
        kw = dict(device=self.device, batch_size=max(self.rank_batch, 64),
                  num_workers=self.cfg.num_workers, channels_last=self.cfg.channels_last)
        backbone = self.model.backbone
        bank, bank_y = extract_features(backbone, self.dataset, bank_idx, self.eval_transform,
                                        **kw)
        val, val_y = extract_features(backbone, self.val_set, self.val_idx, self.eval_transform,
                                      **kw)
        return knn_accuracy(bank, bank_y, val, val_y, k=self.cfg.knn_k,
                            temperature=self.cfg.knn_temperature)

    # ------------------------------------------------------------ training
    def _epoch_loader(self, epoch: int, skip_steps: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)[skip_steps * self.rank_batch:
                                   self.steps_per_epoch * self.rank_batch]
        return DataLoader(self.train_set, batch_size=self.rank_batch, sampler=order,
                          drop_last=True, num_workers=self.cfg.num_workers,
                          collate_fn=collate_samples, pin_memory=self.device.type == "cuda",
                          # own generator: creating the loader must not draw from the global
                          # RNG, or a resumed run's augmentations would differ.
                          generator=torch.Generator().manual_seed(self.cfg.seed + epoch),
                          worker_init_fn=ignore_interrupts_in_worker,
                          persistent_workers=False)

    def train_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        cfg = self.cfg
        images = images.to(self.device, non_blocking=True)
        view1, view2 = self.augment(images), self.augment(images, second=True)
        if cfg.channels_last and cfg.arch != "pixel":
            view1 = view1.contiguous(memory_format=torch.channels_last)
            view2 = view2.contiguous(memory_format=torch.channels_last)
        lr = learning_rate(self.step, self.total_steps, self.base_lr, schedule=cfg.schedule,
                           warmup_steps=round(cfg.warmup_epochs * self.steps_per_epoch),
                           milestones=cfg.lr_milestones)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        m = momentum_at(self.step, self.total_steps, cfg.momentum, cfg.momentum_schedule)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp == "bf16"):
            out = self.net(view1, view2, momentum=m)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        return out.loss.detach(), out.accuracy.detach(), lr, m

    def run(self) -> PretrainResult:
        cfg, ctx = self.cfg, self.ctx
        start = time.time()
        logger = None
        if ctx.distributed and self.net is self.model:
            # Buffers are not broadcast: the queue is kept identical by gathering keys, and each
            # rank's key-encoder BN statistics are its own (rank 0's are saved).
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
                broadcast_buffers=False)
        record = RunRecord(self.run_dir)
        if ctx.is_main:
            self.run_folder.prepare(outputs=(
                "encoder.pt", torchvision_file_name(export_config(self.config_dict))))
            record.start(
                device=self.device, precision="bf16" if self.amp == "bf16" else "float32",
                precision_reason=self.amp_reason, compile_mode="off", prog=self.entry_point,
                resumed_from=self.step if self.resumed else None, extra={
                    "world_size": ctx.world_size, "batch_per_rank": self.rank_batch,
                    "effective_lr": self.base_lr, "train_items": len(self.train_idx),
                    "val_items": len(self.val_idx), "classes": self.dataset.classes,
                    "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps})
            # A fresh run clears rows left by an earlier attempt that never checkpointed.
            sinks = list(self.sinks)
            if cfg.wandb is not None:
                from curl_moco.io.wandb_sink import WandbSink

                sinks.append(WandbSink(cfg.wandb, self.run_dir, self.config_dict,
                                       name=f"{cfg.name}/{cfg.arch}/seed{cfg.seed}",
                                       step_column=STEP_COLUMN))
            logger = self.run_folder.open_logger(self.step if self.resumed else None,
                                          tensorboard=cfg.tensorboard, sinks=sinks,
                                          step_column=STEP_COLUMN, renames=LEGACY_COLUMNS,
                                          groups=LOG_GROUPS)
            logger.config(self.config_dict, self.step)
            log.info("%s", self.header())
        try:
            with self.stop:
                while self.epoch < cfg.epochs:
                    self._run_epoch(logger)
                    if self.epoch < cfg.epochs and self._stop_agreed():
                        self._interrupt()
        finally:
            if logger is not None:
                logger.close()
            record.finish(step=self.step)
        if ctx.is_main and cfg.export:
            self.export()
        encoder = self.run_dir / "encoder.pt"
        self.run_folder.release()  # done: the folder is free for the next run
        return PretrainResult(
            run_dir=self.run_dir, step=self.step, epochs=self.epoch,
            metrics={k: v for k, v in self.last.items() if k != "epoch"},
            checkpoint=self.ckpt_path, config_path=self.run_folder.config_path,
            encoder=encoder if cfg.export and encoder.is_file() else None,
            csv_paths=csv_files(self.run_dir, LOG_GROUPS),
            tensorboard_dir=(self.run_dir / "tb") if cfg.tensorboard else None,
            resumed_from=self._resumed_step, wall_s=time.time() - start)

    def header(self) -> str:
        """The start-up header: data, steps, device, precision, run folder."""
        cfg = self.cfg
        where = (f"resumed from step {self.step}" if self.resumed else "fresh run")
        ranks = f", {self.ctx.world_size} processes" if self.ctx.world_size > 1 else ""
        return header(
            f"MoCo ({cfg.arch}) on {cfg.data}: {cfg.epochs} epochs x {self.steps_per_epoch} "
            f"steps = {self.total_steps:,} steps of {cfg.batch_size} images", {
                "device": device_line(self.device) + ranks,
                "precision": self.amp_reason,
                "run folder": f"{self.run_dir} ({where})"})

    def _run_epoch(self, logger: Logger | None) -> None:
        cfg, ctx = self.cfg, self.ctx
        epoch = self.epoch
        loader = self._epoch_loader(epoch, self.step_in_epoch)
        bar = None
        if ctx.is_main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch,
                       desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)
        self.model.train()
        window_start, window_images = time.perf_counter(), 0
        for batch in loader:
            loss, acc, lr, m = self.train_step(batch["image"])
            self.step += 1
            self.step_in_epoch += 1
            loss_f, acc_f = float(loss), float(acc)
            if not math.isfinite(loss_f):
                raise self._diverged(f"loss={loss_f}")
            self.epoch_sums += torch.tensor([loss_f, acc_f, 1.0, float(batch["skipped"])],
                                            dtype=torch.float64)
            window_images += batch["image"].shape[0] * ctx.world_size
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_f:.3f}", acc=f"{acc_f:.2f}")
            if cfg.log_every_steps and self.step % cfg.log_every_steps == 0:
                elapsed = time.perf_counter() - window_start
                row = {"epoch": epoch + self.step_in_epoch / self.steps_per_epoch,
                       "loss": loss_f, "accuracy": acc_f, "lr": lr, "momentum": m,
                       "images_per_s": window_images / max(elapsed, 1e-9)}
                if self.model.queue is not None:
                    row["queue_filled"] = min(1.0, int(self.model.queue.num_enqueued)
                                              / self.model.queue.size)
                if logger is not None:
                    logger.log("train", self.step, row)
                window_start, window_images = time.perf_counter(), 0
            if self.step_in_epoch == self.steps_per_epoch:
                break
            if cfg.checkpoint_every_steps and self.step % cfg.checkpoint_every_steps == 0:
                self.save()
            if self._stop_agreed():
                if bar is not None:
                    bar.close()
                self._interrupt()
        if bar is not None:
            bar.close()
        sums = all_reduce_sum(self.epoch_sums)
        self.epoch_sums = torch.zeros(4, dtype=torch.float64)
        skipped = int(sums[3])
        self.skipped_total += skipped
        self.epoch, self.step_in_epoch = epoch + 1, 0
        row = {"epoch": self.epoch, "loss": float(sums[0] / max(sums[2], 1)),
               "accuracy": float(sums[1] / max(sums[2], 1)), "skipped_images": skipped,
               "skipped_images_total": self.skipped_total}
        if skipped:
            log.warning("epoch %d: skipped %d unreadable image(s) (%d in total)", self.epoch,
                        skipped, self.skipped_total)
        every = cfg.knn_every_epochs
        if ctx.is_main and every and len(self.val_idx) and (
                self.epoch % every == 0 or self.epoch == cfg.epochs):
            row["knn_accuracy"] = self.knn_monitor()
        self.last = {k: float(v) for k, v in row.items()}
        if logger is not None:
            logger.log("epoch", self.step, row)
            logger.flush()
            log.info("epoch %d/%d: %s", self.epoch, cfg.epochs,
                     ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
        self.save()

    # ------------------------------------------------------------ export
    def export(self) -> None:
        """``encoder.pt`` (exchange format) and, for ResNets and ViTs, the torchvision state
        dict ``backbone_torchvision.pt`` (``backbone_torchvision_small_input.pt`` etc. when it
        does not load into the stock torchvision model: :func:`torchvision_file_name`)."""
        arch = export_config(self.config_dict)
        backbone = self.model.backbone
        export_backbone(backbone, arch, self.run_dir / "encoder.pt")
        if self.cfg.arch != "pixel":
            export_torchvision(backbone, self.run_dir / torchvision_file_name(arch))


def train(cfg: MocoConfig, sinks: Sequence[MetricSink] = (), *,
          entry_point: str | None = None) -> PretrainResult:
    """Pretrain with ``cfg`` in this process (joining torchrun's process group if launched by
    it). Returns a :class:`PretrainResult` (the last epoch's metrics: loss, accuracy,
    knn_accuracy, ...; the run's files); rank 0 logs to the run folder's CSV files (+
    TensorBoard) and to any extra ``sinks``. ``entry_point``: the command's module, recorded
    in run.json by the command line."""
    # Under torchrun every rank checks the settings, joins the process group even when they are
    # wrong, and the ranks agree before any other collective (start_together): one rank's
    # refusal stops all of them with its message, never a rank waiting for a partner that left.
    world_size = launched_world_size()
    problem, device = None, torch.device("cpu")
    try:
        with usage_errors():  # only checks settings: its errors are the user's
            validate(cfg, world_size)
        device = resolve_device(cfg.device)
        if cfg.sync_bn and (device.type != "cuda" or world_size < 2):
            raise UsageError("sync_bn=True needs DDP on CUDA (torchrun with GPUs); on CPU or "
                             "in one process use shuffle_bn or plain BN")
    except UsageError as error:
        if world_size <= 1:
            raise
        problem = error
    ctx = init_distributed(device)
    trainer = None
    try:
        with start_together(ctx, settings=config_to_dict(cfg)):
            if problem is not None:
                raise problem
            trainer = Trainer(cfg, ctx, sinks)  # checks the data and the run folder
            trainer.entry_point = entry_point
        return trainer.run()
    except RefusedByOtherRank as refused:
        if trainer is not None:
            trainer.run_folder.release()  # before waiting: torchrun may stop this rank
        refused.wait()
        raise
    finally:
        if trainer is not None:
            trainer.run_folder.release()
        cleanup_distributed()
