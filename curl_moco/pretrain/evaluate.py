"""Frozen-feature evaluation: weighted kNN, linear probe, ridge regression of physics state.

All three take features already extracted by :func:`extract_features` (the backbone is frozen and
in eval mode; images get the deterministic :class:`EvalTransform`).

- kNN (Wu et al. 2018, the MoCo monitor): cosine similarity to a labelled memory bank, the top-k
  neighbours vote with weight ``exp(sim / T)``.
- Linear probe: multinomial logistic regression on standardised features (full batch, Adam,
  L2 penalty), accuracy on the held-out split. This is a probe on precomputed features, not the
  augmented 100-epoch ImageNet protocol.
- Ridge regression: ``y = W x + b`` on standardised features, penalty chosen on a split of the
  training items, R^2 on the held-out items averaged over target dimensions that vary.

MoCo's own linear-classification protocol (augmented images, SGD, many epochs; the number the
papers report) is :mod:`curl_moco.pretrain.lincls`, run by :func:`run_linear_eval` with
``protocol="linear"``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from curl_moco.io.checkpoint import CheckpointError, load_checkpoint, read_header
from curl_moco.io.checks import (
    check_distinct,
    check_input_file,
    check_non_negative,
    check_number,
    check_output_file,
    check_positive,
    check_seed,
    listing,
)
from curl_moco.io.encoder_export import ENCODER_KIND, load_encoder_state
from curl_moco.io.errors import UsageError, usage_errors
from curl_moco.io.interrupt import ignore_interrupts_in_worker
from curl_moco.pretrain.config import LinearEvalConfig
from curl_moco.pretrain.data import (
    ImageFolderDataset,
    classes_not_held_out,
    collate_samples,
    split_indices,
)
from curl_moco.pretrain.export import arch_config, build_backbone
from curl_moco.pretrain.lincls import LinclsSettings, linear_classification
from curl_moco.pretrain.transforms import EvalTransform
from curl_moco.runtime import resolve_device

log = logging.getLogger("curl_moco")


@torch.no_grad()
def extract_features(backbone: nn.Module, dataset: ImageFolderDataset,
                     indices: Sequence[int] | np.ndarray, transform: nn.Module,
                     device: torch.device, *, batch_size: int = 256, num_workers: int = 0,
                     channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features of ``dataset[indices]``: ``(N, D)`` float32 and labels ``(N,)``, on the
    CPU, in the order of ``indices``. The backbone's train/eval mode is restored afterwards."""
    loader = DataLoader(Subset(dataset, list(map(int, indices))), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers, collate_fn=collate_samples,
                        worker_init_fn=ignore_interrupts_in_worker)
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    try:
        for batch in loader:
            x = transform(batch["image"].to(device, non_blocking=True))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                f = backbone(x)
            feats.append(f.float().cpu())
            labels.append(batch["label"])
    finally:
        backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, *,
                k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN class prediction ``(Q,)`` for ``queries (Q, D)`` against ``bank (N, D)``.

    Cosine similarities; the ``min(k, N)`` nearest bank items vote for their label with weight
    ``exp(sim / temperature)``; the class with the largest total wins (ties: lowest index).
    """
    if k < 1:
        raise ValueError(f"knn_k={k} must be >= 1")
    if not temperature > 0:
        raise ValueError(f"knn_temperature={temperature} must be > 0")
    if bank.shape[0] == 0:
        raise ValueError("the kNN memory bank is empty")
    classes = int(bank_labels.max()) + 1 if num_classes is None else num_classes
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    preds = []
    for start in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[start:start + chunk].float(), dim=1)
        sim, idx = (q @ bank.t()).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], classes, dtype=torch.float32, device=q.device)
        votes.scatter_add_(1, bank_labels.to(q.device)[idx], (sim / temperature).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor,
                 labels: torch.Tensor, *, k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 accuracy in [0, 1] of :func:`knn_predict`."""
    classes = int(max(bank_labels.max(), labels.max())) + 1
    pred = knn_predict(bank, bank_labels, queries, k=k, temperature=temperature,
                       num_classes=classes)
    return float((pred == labels.to(pred.device)).float().mean())


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True).clamp_min(1e-6)
    return [(x - mean) / std for x in (train, *others)]


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, *, epochs: int = 200, lr: float = 0.01,
                 weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Held-out accuracy in [0, 1] of a softmax classifier trained on frozen features.

    Full-batch Adam for ``epochs`` steps on standardised features, cross entropy plus
    ``weight_decay * ||W||^2``; deterministic given ``seed``.
    """
    if epochs < 1:
        raise ValueError(f"probe_epochs={epochs} must be >= 1")
    classes = int(max(train_y.max(), test_y.max())) + 1
    xtr, xte = _standardise(train_x.float(), test_x.float())
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(xtr.shape[1], classes)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.01, generator=gen)
        layer.bias.zero_()
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(layer(xtr), train_y) + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((layer(xte).argmax(1) == test_y).float().mean())


def _ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge on centred data: returns ``(W (D, T), b (T,))``."""
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    n, d = xc.shape
    if d <= n:  # primal (D x D) system
        w = np.linalg.solve(xc.T @ xc + alpha * np.eye(d), xc.T @ yc)
    else:  # dual (N x N) system
        w = xc.T @ np.linalg.solve(xc @ xc.T + alpha * np.eye(n), yc)
    return w, ym - xm @ w


def _r2_per_dim(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``1 - SSE / SST`` per target dimension ``(T,)``; NaN where ``y_true`` does not vary."""
    sst = ((y_true - y_true.mean(0)) ** 2).sum(0)
    sse = ((y_true - y_pred) ** 2).sum(0)
    keep = sst > 1e-12 * max(1.0, float(sst.max(initial=0.0)))
    return np.where(keep, 1.0 - sse / np.where(keep, sst, 1.0), np.nan)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over target dimensions of ``1 - SSE / SST`` (dimensions with zero variance in
    ``y_true`` are left out; NaN when none varies)."""
    per_dim = _r2_per_dim(y_true, y_pred)
    return float(np.nanmean(per_dim)) if np.isfinite(per_dim).any() else math.nan


def ridge_r2(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor,
             test_y: np.ndarray, *, alphas: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
             groups: np.ndarray | None = None, seed: int = 0) -> tuple[float, np.ndarray]:
    """Held-out R^2 of a ridge regression from features to targets ``(N, T)``.

    A penalty is picked from ``alphas`` for each target dimension by its mean R^2 over a 5-fold
    cross-validation on the training items (folds made of whole ``groups``, e.g. episodes, when
    given, so that the choice is made across groups as the test is); the model is then refitted
    on all training items. Returns ``(r2, alpha per target dimension)``.
    """
    if len(alphas) == 0:
        raise ValueError("ridge_alphas must not be empty")
    xtr, xte = (t.double().numpy() for t in _standardise(train_x.double(), test_x.double()))
    ytr, yte = np.asarray(train_y, np.float64), np.asarray(test_y, np.float64)
    choice = np.zeros(ytr.shape[1], dtype=np.int64)
    ids = np.arange(len(xtr)) if groups is None else np.asarray(groups)
    unique = np.random.default_rng(seed).permutation(np.unique(ids))
    if len(alphas) > 1 and len(unique) >= 2:
        scores = np.zeros((len(alphas), ytr.shape[1]))
        for fold in np.array_split(unique, min(5, len(unique))):
            held = np.isin(ids, fold)
            fit, val = np.flatnonzero(~held), np.flatnonzero(held)
            for i, alpha in enumerate(alphas):
                w, b = _ridge_fit(xtr[fit], ytr[fit], alpha)
                scores[i] += np.nan_to_num(_r2_per_dim(ytr[val], xtr[val] @ w + b), nan=-1e9)
        choice = scores.argmax(0)
    pred = np.zeros_like(yte)
    for i in np.unique(choice):
        w, b = _ridge_fit(xtr, ytr, float(alphas[i]))
        pred[:, choice == i] = (xte @ w + b)[:, choice == i]
    return r2_score(yte, pred), np.asarray(alphas, dtype=np.float64)[choice]


def state_r2_by_class(train_x: torch.Tensor, train_y: torch.Tensor, train_targets: np.ndarray,
                      test_x: torch.Tensor, test_y: torch.Tensor, test_targets: np.ndarray,
                      class_names: Sequence[str], *, alphas: Sequence[float],
                      train_groups: np.ndarray | None = None, seed: int = 0
                      ) -> dict[str, float]:
    """Ridge R^2 of each class's (domain's) own state vector, fitted on that class's training
    items only (state sizes differ between domains). ``*_targets``: object arrays of vectors;
    ``train_groups``: episode of each training item (penalty chosen across episodes).
    Returns ``{class name: R^2}``; classes with too few items are left out."""
    out: dict[str, float] = {}
    for label, name in enumerate(class_names):
        tr = (train_y == label).numpy()
        te = (test_y == label).numpy()
        if tr.sum() < 2 or te.sum() < 2:
            continue
        ytr = np.stack(list(train_targets[tr]))
        yte = np.stack(list(test_targets[te]))
        groups = None if train_groups is None else np.asarray(train_groups)[tr]
        r2, _ = ridge_r2(train_x[torch.from_numpy(tr)], ytr, test_x[torch.from_numpy(te)], yte,
                         alphas=alphas, groups=groups, seed=seed)
        if not math.isnan(r2):
            out[name] = r2
    return out


# ---------------------------------------------------------------- the linear_eval entry point
def check_linear_eval_config(cfg: LinearEvalConfig) -> None:
    """Start-up checks of every setting, before any file is read beyond its existence: raise
    :class:`UsageError` naming the setting."""
    if not cfg.checkpoint and not (cfg.random_init and cfg.arch):
        raise UsageError("checkpoint is required (or --random-init --arch NAME)")
    if cfg.checkpoint:
        check_input_file("checkpoint", cfg.checkpoint)
        if cfg.arch:
            raise UsageError(f"arch={cfg.arch!r} conflicts with checkpoint={cfg.checkpoint!r}: "
                             "the architecture is the checkpoint's (also with --random-init); "
                             "drop --arch, or drop --checkpoint to evaluate a random "
                             f"{cfg.arch} (--random-init --arch {cfg.arch})")
    check_positive(cfg, "lincls_lr", "lincls_epochs", "lincls_batch_size")
    check_number("lincls_momentum", cfg.lincls_momentum, low=0.0, high=1.0,
                 high_inclusive=False)
    check_non_negative(cfg, "lincls_weight_decay")
    check_positive(cfg, "knn_k", "knn_temperature", "probe_epochs", "probe_lr", "batch_size",
                   "frame_stack", "load_size", "crop_size", "feature_dim")
    check_non_negative(cfg, "probe_weight_decay", "num_workers")
    check_seed("seed", cfg.seed)
    check_number("val_fraction", cfg.val_fraction, high=1.0, high_inclusive=False)
    if not cfg.ridge_alphas:
        raise UsageError("ridge_alphas must not be empty")
    for alpha in cfg.ridge_alphas:
        check_number("ridge_alphas", alpha, low=0.0, low_inclusive=False)
    if cfg.crop_size > cfg.load_size:
        raise UsageError(f"crop_size={cfg.crop_size} is larger than load_size={cfg.load_size}")
    for name in ("data", "val_data"):
        value = getattr(cfg, name)
        if value and not Path(value).is_dir():
            raise UsageError(f"{name}={value!r} "
                             f"{'is not a folder' if Path(value).exists() else 'does not exist'}")
    if cfg.json_out:
        check_distinct({"json_out": cfg.json_out}, {"checkpoint": cfg.checkpoint})
        check_output_file("json_out", cfg.json_out)


def load_backbone_for_eval(cfg: LinearEvalConfig) -> tuple[nn.Module, dict[str, Any], dict]:
    """Backbone (pretrained, or randomly initialised with ``random_init``), its architecture
    dict, and the data settings of the run that made it (``data``, ``load_size``,
    ``val_fraction``, ``seed``, ``val_data``; empty without a checkpoint)."""
    if cfg.checkpoint:
        header = read_header(cfg.checkpoint)
        if header["kind"] == "moco":
            train_cfg = header["config"]
            arch = arch_config(train_cfg)
            source = {k: train_cfg.get(k) for k in ("data", "val_data", "load_size",
                                                    "val_fraction", "seed")}
        elif header["kind"] == ENCODER_KIND:
            arch = {k: v for k, v in header["config"].items() if k != "pretrain"}
            source = dict(header["config"].get("pretrain") or {})
        else:
            raise CheckpointError(f"{cfg.checkpoint} is a {header['kind']!r} checkpoint; expected "
                                  "a 'moco' pretraining checkpoint or an exported 'encoder'")
    elif cfg.random_init and cfg.arch:
        arch = arch_config({"arch": cfg.arch, "frame_stack": cfg.frame_stack,
                            "crop_size": cfg.crop_size, "feature_dim": cfg.feature_dim,
                            "pixel_layers": 4, "pixel_filters": 32,
                            "small_input": cfg.small_input, "patch_size": cfg.patch_size})
        source = {"load_size": cfg.load_size}
    else:
        raise UsageError("checkpoint is required (or --random-init --arch NAME)")
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(arch)
    if not cfg.random_init:
        if header["kind"] == "moco":
            model = load_checkpoint(cfg.checkpoint, kind="moco")["payload"]["model"]
            prefix = "encoder_q.backbone."
            state = {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}
        else:
            state = load_encoder_state(cfg.checkpoint, {"arch": arch["arch"]})
        try:
            backbone.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"{cfg.checkpoint}: weights do not fit {arch}: {error}"
                                  ) from error
    return backbone, arch, source


def run_linear_eval(cfg: LinearEvalConfig) -> dict[str, Any]:
    """Frozen-backbone evaluation on a held-out split; see :class:`LinearEvalConfig`.

    ``protocol="features"``: kNN accuracy, linear-probe accuracy and (DMC frames) per-domain
    state R^2 of centre-crop features. ``"linear"``: MoCo's linear-classification protocol
    (:mod:`curl_moco.pretrain.lincls`; ``linear_top1`` is what compares with the papers).
    ``"all"``: both."""
    settings = LinclsSettings(
        epochs=cfg.lincls_epochs, lr=cfg.lincls_lr, batch_size=cfg.lincls_batch_size,
        schedule=cfg.lincls_schedule, momentum=cfg.lincls_momentum,
        weight_decay=cfg.lincls_weight_decay, num_workers=cfg.num_workers, seed=cfg.seed)
    with usage_errors():  # these only check settings: their errors are the user's
        check_linear_eval_config(cfg)
        if cfg.protocol in ("linear", "all"):
            settings.check()
    device = resolve_device(cfg.device)
    backbone, arch, source = load_backbone_for_eval(cfg)
    backbone.to(device)
    data = cfg.data or source.get("data") or ""
    if not data:
        raise UsageError("data is required: pass --data DIR")
    load_size = int(source.get("load_size") or cfg.load_size)
    frames = arch["in_channels"] // 3
    dataset = ImageFolderDataset(data, load_size, frame_stack=frames)
    if len(dataset.classes) < 2:
        raise UsageError(f"data={str(data)!r} has a single class folder "
                         f"({dataset.classes[0]!r}): kNN and linear-probe accuracy need at least "
                         "two classes")
    val_data = cfg.val_data or (source.get("val_data") if not cfg.data else "") or ""
    if val_data:
        val_set = ImageFolderDataset(val_data, load_size, frame_stack=frames, setting="val_data")
        train_idx, val_idx = np.arange(len(dataset)), np.arange(len(val_set))
    else:
        fraction = cfg.val_fraction if cfg.val_fraction >= 0 else float(
            source.get("val_fraction") or 0.1)
        val_set = dataset
        train_idx, val_idx = split_indices(dataset, fraction, int(source.get("seed") or 0))
    if len(val_idx) == 0:
        raise UsageError("the held-out split is empty: set --val-fraction > 0 or --val-data")
    untested = classes_not_held_out(dataset, val_idx) if not val_data else []
    if untested:
        log.warning("%d class(es) have a single image or episode and so none held out (%s): "
                    "the scores do not test them", len(untested), listing(untested))
    if cfg.protocol in ("features", "all") and cfg.target not in ("all", "none"):
        for split in (dataset, val_set):  # asked for explicitly: its data must be there
            split.states(cfg.target)  # UsageError naming target and the folder
    start = time.perf_counter()
    result: dict[str, Any] = {
        "checkpoint": cfg.checkpoint, "random_init": cfg.random_init, "arch": arch,
        "data": str(data), "train_items": len(train_idx), "val_items": len(val_idx),
        "classes": dataset.classes, "protocol": cfg.protocol,
    }
    if cfg.protocol in ("features", "all"):
        result.update(_feature_protocol(cfg, backbone, arch, dataset, train_idx, val_set,
                                        val_idx, device))
    if cfg.protocol in ("linear", "all"):
        result.update(linear_classification(backbone, dataset, train_idx, val_set, val_idx,
                                            arch, len(dataset.classes), settings, device))
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def _feature_protocol(cfg: LinearEvalConfig, backbone: nn.Module, arch: dict[str, Any],
                      dataset: ImageFolderDataset, train_idx: np.ndarray,
                      val_set: ImageFolderDataset, val_idx: np.ndarray, device: torch.device
                      ) -> dict[str, Any]:
    """kNN, linear probe and (DMC frames) state R^2 on centre-crop features."""
    transform = EvalTransform(arch["image_size"], arch["in_channels"], arch["normalize"]).to(device)
    kw = dict(device=device, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    train_x, train_y = extract_features(backbone, dataset, train_idx, transform, **kw)
    val_x, val_y = extract_features(backbone, val_set, val_idx, transform, **kw)
    result: dict[str, Any] = {
        "feature_dim": int(train_x.shape[1]),
        "knn_accuracy": knn_accuracy(train_x, train_y, val_x, val_y, k=cfg.knn_k,
                                     temperature=cfg.knn_temperature),
        "linear_probe_accuracy": linear_probe(train_x, train_y, val_x, val_y,
                                              epochs=cfg.probe_epochs, lr=cfg.probe_lr,
                                              weight_decay=cfg.probe_weight_decay, seed=cfg.seed),
    }
    targets = ("state", "internal_state") if cfg.target == "all" else (
        () if cfg.target == "none" else (cfg.target,))
    for target in targets:  # explicit targets were checked at start-up; "all" takes what is there
        if dataset.meta is None or target not in dataset.meta or (
                val_set.meta is None or target not in val_set.meta):
            continue
        per_class = state_r2_by_class(
            train_x, train_y, dataset.states(target)[train_idx], val_x, val_y,
            val_set.states(target)[val_idx], dataset.classes, alphas=cfg.ridge_alphas,
            train_groups=dataset.meta["episode"][train_idx], seed=cfg.seed)
        result[f"{target}_r2_by_domain"] = per_class
        result[f"{target}_r2_mean"] = float(np.mean(list(per_class.values())))
    return result
