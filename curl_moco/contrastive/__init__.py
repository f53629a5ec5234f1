"""The shared contrastive core: encoders, momentum encoders, key queue, InfoNCE, augmentations.

Used by both :mod:`curl_moco.rl` (CURL) and :mod:`curl_moco.pretrain` (MoCo); it imports neither.
"""

from curl_moco.contrastive.augment import (
    AUGMENT_BACKENDS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MocoAugment,
    center_crop,
    crop_at,
    gaussian_blur,
    random_crop,
    random_shift,
    resized_crop,
    sample_resized_crops,
)
from curl_moco.contrastive.color import apply_color_twist, color_twist, sample_color_jitter
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
)
from curl_moco.contrastive.momentum import MomentumEncoder, ema_update
from curl_moco.contrastive.queue import KeyQueue, gather_from_all_ranks

__all__ = [
    "AUGMENT_BACKENDS",
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
    "apply_color_twist",
    "center_crop",
    "color_twist",
    "conv_output_size",
    "curl_init_",
    "crop_at",
    "ema_update",
    "gather_from_all_ranks",
    "gaussian_blur",
    "info_nce",
    "info_nce_logits",
    "make_backbone",
    "random_crop",
    "random_shift",
    "resized_crop",
    "sample_color_jitter",
    "sample_resized_crops",
]
