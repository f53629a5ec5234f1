"""The shared contrastive core: encoders, momentum encoders, key queue, InfoNCE, augmentations.

Used by both :mod:`curl_moco.rl` (CURL) and :mod:`curl_moco.pretrain` (MoCo); it imports neither.
"""

from curl_moco.contrastive.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MocoAugment,
    center_crop,
    crop_at,
    random_crop,
)
from curl_moco.contrastive.encoders import (
    BACKBONES,
    PixelEncoder,
    ProjectionHead,
    ResNetBackbone,
    conv_output_size,
    curl_init_,
    make_backbone,
)
from curl_moco.contrastive.losses import (
    InfoNCE,
    InfoNCEOutput,
    info_nce,
    info_nce_logits,
    symmetric_info_nce,
)
from curl_moco.contrastive.momentum import MomentumEncoder, ema_update
from curl_moco.contrastive.queue import KeyQueue, gather_from_all_ranks

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InfoNCE",
    "InfoNCEOutput",
    "KeyQueue",
    "MocoAugment",
    "MomentumEncoder",
    "PixelEncoder",
    "ProjectionHead",
    "ResNetBackbone",
    "center_crop",
    "conv_output_size",
    "curl_init_",
    "crop_at",
    "ema_update",
    "gather_from_all_ranks",
    "info_nce",
    "info_nce_logits",
    "make_backbone",
    "random_crop",
    "symmetric_info_nce",
]
