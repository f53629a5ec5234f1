"""Configuration of MoCo pretraining and of frozen-feature evaluation (one dataclass per entry
point; every field is a ``--kebab-case`` flag, see :mod:`curl_moco.io.config`).

Named presets (official MoCo v1/v2/v3 defaults) live in ``experiments/configs/moco.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from curl_moco.contrastive.augment import AUGMENT_BACKENDS
from curl_moco.contrastive.encoders import BACKBONES, HEAD_KINDS, conv_output_size, is_vit
from curl_moco.contrastive.queue import KeyQueue
from curl_moco.io.checks import (
    check_choices,
    check_folder_name,
    check_learning_rate,
    check_non_negative,
    check_number,
    check_output_dir,
    check_positive,
    check_seed,
)
from curl_moco.io.config import knob
from curl_moco.io.errors import UsageError, usage_errors
from curl_moco.io.wandb_sink import check_wandb
from curl_moco.pretrain.transforms import AUGMENT_RECIPES
from curl_moco.runtime import AMP_MODES

OPTIMIZERS: tuple[str, ...] = ("sgd", "lars", "adamw")
LR_SCHEDULES: tuple[str, ...] = ("cosine", "step", "constant")
MOMENTUM_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
TARGETS: tuple[str, ...] = ("all", "state", "internal_state", "none")
PROTOCOLS: tuple[str, ...] = ("features", "linear", "all")
#: Fields a resumed run may change (the rest, and the world size, must equal the checkpoint's):
#: where the data and outputs are, devices, speed knobs, logging, monitoring and intervals.
RESUMABLE_CHANGES = frozenset({
    "data", "val_data", "num_workers", "name", "device", "amp", "channels_last",
    "augment_backend", "run_dir", "resume", "checkpoint_every_steps", "log_every_steps",
    "knn_every_epochs", "knn_k", "knn_temperature", "knn_bank_size", "tensorboard", "wandb",
    "progress", "export",
})


@dataclass
class MocoConfig:
    """Everything one pretraining run needs; saved as ``config.json`` and in checkpoints."""

    # --- data
    data: str = knob("", "image folder root/<class>/<image> (e.g. from experiments.collect_frames)")
    val_data: str = knob("", "labelled held-out folder for the kNN monitor; empty = hold out "
                             "val_fraction of data (whole episodes for DMC frames)")
    val_fraction: float = knob(0.1, "fraction of data held out when val_data is empty")
    load_size: int = knob(256, "side of the decoded square image (CPU workers), pixels",
                          flag="image-size", aliases=("load-size",))
    crop_size: int = knob(224, "side of the augmented views fed to the network, pixels")
    frame_stack: int = knob(1, "consecutive frames stacked on channels (needs frames.npz)")
    augment: str = knob("v2", "view augmentation recipe (v3: BYOL's asymmetric pair of views)",
                        choices=AUGMENT_RECIPES)
    crop_min: float = knob(0.0, "smallest area fraction of the random resized crop; 0 = the "
                                "recipe's (v1/v2 0.2, v3 0.08; MoCo v3 ResNets use 0.2)")
    augment_backend: str = knob("fused", "v1/v2 ops: fused (few batched ops; hue as a rotation "
                                "about the grey axis) or kornia (torchvision's exact colour "
                                "semantics, slower)", choices=AUGMENT_BACKENDS)
    num_workers: int = knob(4, "data loader worker processes per rank")
    # --- model
    name: str = knob("moco", "run name prefix (presets set mocov1/v2/v3)")
    arch: str = knob("resnet50", "backbone", choices=BACKBONES)
    small_input: bool = knob(False, "ResNet: 3x3 stride-1 conv1 and no max-pool (small images)")
    zero_init_residual: bool = knob(False, "ResNet: zero-init the last BN of each block (v3)")
    patch_size: int = knob(16, "ViT: patch side, pixels (crop_size must be a multiple)")
    stop_grad_patch: bool = knob(True, "ViT: keep the random patch projection frozen (MoCo v3's "
                                       "--stop-grad-conv1)")
    feature_dim: int = knob(50, "pixel encoder: output features (agent uses 50)")
    pixel_layers: int = knob(4, "pixel encoder: conv layers")
    pixel_filters: int = knob(32, "pixel encoder: filters per conv layer")
    dim: int = knob(128, "contrastive embedding size")
    head: str = knob("mlp", "projection head", choices=HEAD_KINDS)
    head_hidden: int = knob(0, "hidden width of an MLP head; 0 = backbone output size")
    head_layers: int = knob(0, "v3 head: projector layers; 0 = official (3 for ViTs, 2 otherwise)")
    predictor_hidden: int = knob(0, "hidden width of the v3 predictor MLP; 0 = no predictor")
    queue_size: int = knob(65536, "K, keys in the queue; 0 = in-batch keys only")
    momentum: float = knob(0.999, "m of the key encoder EMA (tau = 1 - m)")
    momentum_schedule: str = knob("constant", "cosine: m rises to 1 over training (v3)",
                                  choices=MOMENTUM_SCHEDULES)
    temperature: float = knob(0.2, "T dividing cosine similarities")
    symmetric: bool = knob(False, "v3 symmetrised loss with in-batch keys")
    shuffle_bn: bool = knob(True, "shuffle the key batch across ranks for BN (no-op in 1 process)")
    bn_splits: int = knob(1, "emulate N ranks' BatchNorm inside each process (MoCo's single-GPU "
                             "SplitBatchNorm; with shuffle_bn the key chunks are shuffled)")
    sync_bn: bool = knob(False, "SyncBatchNorm in both encoders (DDP on CUDA only)")
    # --- optimisation
    optimizer: str = knob("sgd", "optimiser", choices=OPTIMIZERS)
    lr: float = knob(0.03, "learning rate for a global batch of lr_scale_batch")
    lr_scale_batch: int = knob(256, "lr is scaled by batch_size / lr_scale_batch; 0 = no scaling")
    sgd_momentum: float = knob(0.9, "SGD/LARS momentum")
    weight_decay: float = knob(1e-4, "weight decay")
    schedule: str = knob("cosine", "learning-rate schedule", choices=LR_SCHEDULES)
    lr_milestones: tuple[float, ...] = knob((0.6, 0.8), "step schedule: fractions of training "
                                                         "at which lr is divided by 10")
    warmup_epochs: float = knob(0.0, "linear warm-up, epochs")
    epochs: int = knob(200, "training epochs")
    batch_size: int = knob(256, "GLOBAL batch (all ranks together); must divide queue_size")
    max_steps_per_epoch: int = knob(0, "cap on steps per epoch for quick runs; 0 = full epochs")
    # --- runtime
    device: str = knob("auto", "auto | cpu | cuda | cuda:N (torchrun: cuda:LOCAL_RANK)")
    amp: str = knob("auto", "bf16 autocast of the whole MoCo forward (backbones, heads, "
                    "logits; BatchNorm, softmax and the loss run in float32 as autocast decides; "
                    "weights and SGD stay float32): 'auto' = bf16 where the CPU/GPU has native "
                    "bf16 dot products (avx512_bf16, amx_bf16, CUDA Ampere+), else float32; "
                    "'bf16'; 'off' = float32", choices=AMP_MODES)
    channels_last: bool = knob(False, "channels-last memory format (ResNets on GPU)")
    seed: int = knob(0, "seed of model init, data order and augmentation")
    run_dir: str = knob("", "output folder; empty = runs/<name>/<arch>/seed<seed>")
    resume: bool = knob(True, "continue from run_dir's checkpoint when it holds one (a run of "
                              "another configuration is refused; with --no-resume, any run)")
    checkpoint_every_steps: int = knob(0, "extra checkpoints every N steps; 0 = end of epoch only")
    log_every_steps: int = knob(10, "training metrics every N steps")
    knn_every_epochs: int = knob(1, "kNN monitor on the held-out split every N epochs; 0 = off")
    knn_k: int = knob(20, "neighbours of the kNN monitor")
    knn_temperature: float = knob(0.07, "temperature of the kNN vote weights exp(sim / T)")
    knn_bank_size: int = knob(10000, "most training images in the kNN memory bank")
    tensorboard: bool = knob(True, "write TensorBoard scalars")
    wandb: str | None = knob(None, "Weights & Biases project: metrics and the resolved config go "
                             "there too (pip install 'curl_moco[wandb]'; WANDB_MODE=offline "
                             "without a network)")
    progress: bool = knob(True, "tqdm progress bar")
    export: bool = knob(True, "export the query backbone to run_dir/encoder.pt at the end")


@dataclass
class LinearEvalConfig:
    """Frozen-backbone evaluation: kNN, linear probe and (DMC frames) state regression on
    precomputed features, and/or MoCo's linear-classification protocol."""

    checkpoint: str = knob("", "pretraining checkpoint (run_dir/checkpoint.pt) or exported "
                                "encoder.pt; with --random-init only its architecture is used")
    data: str = knob("", "labelled image folder (defaults to the checkpoint's data)")
    val_data: str = knob("", "held-out folder; empty = the pretraining run's held-out split")
    val_fraction: float = knob(-1.0, "held-out fraction when val_data is empty; < 0 = as in the "
                                     "checkpoint's config (0.1 without one)")
    random_init: bool = knob(False, "evaluate the same architecture at random initialisation")
    arch: str = knob("", "architecture for --random-init without a checkpoint", choices=
                     ("",) + BACKBONES)
    small_input: bool = knob(False, "with --arch: ResNet small-input variant")
    frame_stack: int = knob(1, "with --arch: frames per item")
    load_size: int = knob(84, "with --arch: decoded image side", flag="image-size",
                          aliases=("load-size",))
    crop_size: int = knob(84, "with --arch: network input side")
    feature_dim: int = knob(50, "with --arch pixel: output features")
    patch_size: int = knob(16, "with --arch vit_*: patch side")
    protocol: str = knob("features", "features: kNN, probe (and state R^2) on centre-crop "
                                     "features; linear: MoCo's linear classification (frozen "
                                     "backbone, SGD on augmented images); all: both",
                         choices=PROTOCOLS)
    knn_k: int = knob(20, "neighbours")
    knn_temperature: float = knob(0.07, "kNN vote weights exp(sim / T)")
    probe_epochs: int = knob(200, "linear probe: full-batch epochs (Adam)")
    probe_lr: float = knob(0.01, "linear probe: Adam learning rate")
    probe_weight_decay: float = knob(1e-4, "linear probe: L2 penalty")
    lincls_epochs: int = knob(90, "linear classification: epochs (MoCo v3 90, v1/v2 100)")
    lincls_lr: float = knob(0.1, "linear classification: SGD lr for a batch of 256, scaled by "
                                 "lincls_batch_size / 256 (MoCo v3: ResNet 0.1, ViT 3; v1/v2: 30)")
    lincls_batch_size: int = knob(256, "linear classification: batch (MoCo v3 1024, v1/v2 256)")
    lincls_schedule: str = knob("cosine", "linear classification: lr schedule per epoch (v3 "
                                          "cosine; v1/v2 step: / 10 at 60 % and 80 %)",
                                choices=("cosine", "step"))
    lincls_momentum: float = knob(0.9, "linear classification: SGD momentum")
    lincls_weight_decay: float = knob(0.0, "linear classification: weight decay")
    ridge_alphas: tuple[float, ...] = knob((0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6),
                                           "ridge penalties tried (chosen per target by 5-fold CV)")
    target: str = knob("all", "regression target(s) from frames.npz: physics state, the task's "
                              "observation (internal_state), both, or none", choices=TARGETS)
    batch_size: int = knob(256, "feature extraction batch")
    num_workers: int = knob(2, "data loader workers")
    device: str = knob("auto", "auto | cpu | cuda | cuda:N")
    seed: int = knob(0, "seed of the random initialisation and of the probe")
    json_out: str = knob("", "also write the results to this JSON file")


#: Largest decoded image side, pixels (a typo such as 22400 would exhaust memory in the workers).
MAX_IMAGE_SIZE = 4096


def default_run_dir(cfg: MocoConfig) -> Path:
    return Path(cfg.run_dir or f"runs/{cfg.name}/{cfg.arch}/seed{cfg.seed}")


def validate(cfg: MocoConfig, world_size: int = 1, *, for_training: bool = True) -> MocoConfig:
    """Check every setting before any work (none needs the data); returns ``cfg``. Raises
    :class:`UsageError` naming the offending setting and the value given (e.g. ``lr`` before it
    is scaled by the batch size). ``for_training=False`` skips the output folder's check
    (building a model from a config needs no run folder)."""
    if not cfg.data:
        raise UsageError("data is required: pass --data DIR (an image folder root/<class>/<img>)")
    check_positive(cfg, "lr", "temperature", "knn_temperature", "load_size", "crop_size",
                   "frame_stack", "dim", "feature_dim", "pixel_layers", "pixel_filters",
                   "knn_k", "knn_bank_size", "epochs")
    check_non_negative(cfg, "weight_decay", "warmup_epochs", "lr_scale_batch", "num_workers",
                       "checkpoint_every_steps", "knn_every_epochs", "max_steps_per_epoch",
                       "head_hidden", "predictor_hidden", "log_every_steps")
    check_seed("seed", cfg.seed)
    check_number("momentum", cfg.momentum, low=0.0, high=1.0)
    if cfg.momentum == 1.0:
        raise UsageError("momentum=1 means the key encoder never moves from its initial "
                         "weights; use m < 1 (MoCo v1/v2: 0.999, v3: 0.99; with "
                         "momentum_schedule='cosine' it rises to 1 by itself)")
    check_number("sgd_momentum", cfg.sgd_momentum, low=0.0, high=1.0, high_inclusive=False)
    check_number("val_fraction", cfg.val_fraction, low=0.0, high=1.0, high_inclusive=False)
    for name in ("load_size", "crop_size"):
        check_number(name, getattr(cfg, name), high=MAX_IMAGE_SIZE)
    check_learning_rate("lr", cfg.lr, cfg.lr * (cfg.batch_size / cfg.lr_scale_batch
                                                if cfg.lr_scale_batch else 1))
    for milestone in cfg.lr_milestones:
        check_number("lr_milestones", milestone, low=0.0, high=1.0, low_inclusive=False)
    if cfg.warmup_epochs > cfg.epochs:
        raise UsageError(f"warmup_epochs={cfg.warmup_epochs} is longer than epochs={cfg.epochs}")
    if cfg.batch_size < 1 or cfg.batch_size % world_size != 0:
        raise UsageError(f"batch_size={cfg.batch_size} (global) must be a positive multiple of "
                         f"the world size {world_size}")
    if cfg.queue_size < 0:
        raise UsageError(f"queue_size={cfg.queue_size} must be >= 0 (0 = in-batch keys only)")
    if cfg.queue_size > 0:
        with usage_errors():
            KeyQueue.check_batch(cfg.queue_size, cfg.batch_size)
    if cfg.symmetric and cfg.queue_size > 0:
        raise UsageError(f"symmetric=True (MoCo v3) uses in-batch keys: set queue_size=0, not "
                         f"{cfg.queue_size}")
    if cfg.crop_size > cfg.load_size:
        raise UsageError(f"crop_size={cfg.crop_size} is larger than load_size={cfg.load_size}")
    if cfg.arch == "pixel" and conv_output_size(cfg.crop_size, cfg.pixel_layers) < 1:
        raise UsageError(f"crop_size={cfg.crop_size} is too small for pixel_layers="
                         f"{cfg.pixel_layers} conv layers")
    if is_vit(cfg.arch) and (cfg.patch_size < 1 or cfg.crop_size % cfg.patch_size):
        raise UsageError(f"crop_size={cfg.crop_size} must be a multiple of patch_size="
                         f"{cfg.patch_size} for arch={cfg.arch}")
    if not 0.0 <= cfg.crop_min < 1.0:
        raise UsageError(f"crop_min={cfg.crop_min} must be in [0, 1) (0 = the recipe's)")
    if cfg.bn_splits < 1 or (cfg.batch_size // world_size) % cfg.bn_splits:
        raise UsageError(f"bn_splits={cfg.bn_splits} must divide the per-rank batch "
                         f"{cfg.batch_size // world_size}")
    if cfg.sync_bn and cfg.shuffle_bn:
        raise UsageError("sync_bn=True and shuffle_bn=True are alternatives: pick one "
                         "(--no-shuffle-bn --sync-bn)")
    check_non_negative(cfg, "head_layers")
    check_choices(cfg)
    check_folder_name("name", cfg.name)
    if for_training:
        check_wandb(cfg.wandb)
        check_output_dir("run_dir", default_run_dir(cfg))
    return cfg
