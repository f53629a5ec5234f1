"""MoCo presets: the official recipes' defaults, as overrides of :class:`MocoConfig` fields.

Sources: MoCo v1 (He et al. 2020) and v2 (Chen et al. 2020), `facebookresearch/moco`
``main_moco.py`` (lr 0.03, SGD momentum 0.9, wd 1e-4, batch 256, dim 128, K 65536, m 0.999,
T 0.07; v2 = ``--mlp --moco-t 0.2 --aug-plus --cos``; 200 epochs, lr / 10 at epochs 120 and
160 for v1). MoCo v3 (Chen, Xie & He 2021), `facebookresearch/moco-v3` ``main_moco.py`` and
CONFIG.md for ResNet-50: LARS, base lr 0.6 x batch / 256, wd 1e-6, batch 4096, 100 epochs,
10 warm-up epochs, dim 256, MLP width 4096, m 0.99 rising to 1 (``--moco-m-cos``), symmetric
loss with in-batch keys, no queue, **T = 1.0** (the ResNet default of ``--moco-t``; the ViT
recipes pass ``--moco-t=.2``, and the paper's T = 0.2 refers to ViT), zero-init residuals.

Differences from the official v3 recipe, all overridable: the projector is the core's 2-layer
``mlp_bn`` head (official: 3 layers), the augmentation is the v2 recipe for both views (official:
BYOL's asymmetric blur/solarize), and SyncBN is off by default (``--sync-bn --no-shuffle-bn``
on multi-GPU runs, as the official code does).
"""

from __future__ import annotations

from typing import Any

MOCO_PRESETS: dict[str, dict[str, Any]] = {
    "mocov1": dict(
        name="mocov1", head="linear", dim=128, queue_size=65536, momentum=0.999,
        temperature=0.07, augment="v1", optimizer="sgd", lr=0.03, lr_scale_batch=256,
        sgd_momentum=0.9, weight_decay=1e-4, batch_size=256, epochs=200, schedule="step",
        lr_milestones=(0.6, 0.8), warmup_epochs=0.0, symmetric=False, predictor_hidden=0,
        momentum_schedule="constant", shuffle_bn=True,
    ),
    "mocov2": dict(
        name="mocov2", head="mlp", dim=128, queue_size=65536, momentum=0.999,
        temperature=0.2, augment="v2", optimizer="sgd", lr=0.03, lr_scale_batch=256,
        sgd_momentum=0.9, weight_decay=1e-4, batch_size=256, epochs=200, schedule="cosine",
        warmup_epochs=0.0, symmetric=False, predictor_hidden=0, momentum_schedule="constant",
        shuffle_bn=True,
    ),
    "mocov3": dict(
        name="mocov3", head="mlp_bn", head_hidden=4096, dim=256, predictor_hidden=4096,
        queue_size=0, symmetric=True, momentum=0.99, momentum_schedule="cosine",
        temperature=1.0, augment="v2", optimizer="lars", lr=0.6, lr_scale_batch=256,
        sgd_momentum=0.9, weight_decay=1e-6, batch_size=4096, epochs=100, schedule="cosine",
        warmup_epochs=10.0, zero_init_residual=True, shuffle_bn=False,
    ),
}
