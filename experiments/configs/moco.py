"""MoCo presets: the official recipes' defaults, as overrides of :class:`MocoConfig` fields.

Sources: MoCo v1 (He et al. 2020) and v2 (Chen et al. 2020), `facebookresearch/moco`
``main_moco.py`` (lr 0.03, SGD momentum 0.9, wd 1e-4, batch 256, dim 128, K 65536, m 0.999,
T 0.07; v2 = ``--mlp --moco-t 0.2 --aug-plus --cos``; 200 epochs, lr / 10 at epochs 120 and
160 for v1). MoCo v3 (Chen, Xie & He 2021), `facebookresearch/moco-v3` ``main_moco.py``,
``moco/builder.py`` and CONFIG.md.

``mocov3`` (ResNet-50, 100 epochs): LARS, base lr 0.6 x batch / 256, wd 1e-6, batch 4096,
10 warm-up epochs, dim 256, MLP width 4096, m 0.99 rising to 1 (``--moco-m-cos``), symmetric
loss with in-batch keys, no queue, **T = 1.0** (the ResNet default of ``--moco-t``), zero-init
residuals, crops down to 20 % (``--crop-min=.2``), BYOL's asymmetric augmentation, and the
official heads: a **2-layer** projector (Linear-BN-ReLU-Linear-BN, bias-free Linears, the last
BN without affine parameters) and a 2-layer predictor (Linear-BN-ReLU-Linear, no final BN).

``mocov3_vit`` (ViT-S/16, 300 epochs; ``--arch vit_base`` for ViT-B/16): AdamW, base lr
1.5e-4 x batch / 256, wd 0.1, batch 4096 (CONFIG.md's one-node recipe: 1024), 40 warm-up
epochs, m 0.99 -> 1 cosine, T 0.2, crops down to 8 %, frozen random patch projection
(``--stop-grad-conv1``), fixed 2-D sin-cos position embedding, a **3-layer** projector and a
2-layer predictor, both ending with the non-affine BN.

Differences from the official recipes, overridable: SyncBN is off by default (``--sync-bn
--no-shuffle-bn`` on multi-GPU runs, as the official code does); mixed precision is bf16, not
fp16 with a loss scaler; the blur kernel is about 10 % of the crop (PIL's blur has no kernel
size); warm-up starts at lr / warm-up steps rather than 0.
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
        # head_layers 0: the official depth for the arch (2 for ResNets, 3 for ViTs)
        name="mocov3", head="v3", head_hidden=4096, head_layers=0, dim=256,
        predictor_hidden=4096, queue_size=0, symmetric=True, momentum=0.99,
        momentum_schedule="cosine", temperature=1.0, augment="v3", crop_min=0.2,
        optimizer="lars", lr=0.6, lr_scale_batch=256,
        sgd_momentum=0.9, weight_decay=1e-6, batch_size=4096, epochs=100, schedule="cosine",
        warmup_epochs=10.0, zero_init_residual=True, shuffle_bn=False,
    ),
    "mocov3_vit": dict(
        name="mocov3_vit", arch="vit_small", patch_size=16, stop_grad_patch=True, head="v3",
        head_hidden=4096, head_layers=3, dim=256, predictor_hidden=4096, queue_size=0,
        symmetric=True, momentum=0.99, momentum_schedule="cosine", temperature=0.2,
        augment="v3", crop_min=0.08, optimizer="adamw", lr=1.5e-4, lr_scale_batch=256,
        weight_decay=0.1, batch_size=4096, epochs=300, schedule="cosine", warmup_epochs=40.0,
        shuffle_bn=False,
    ),
}
