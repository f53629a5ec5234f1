"""Image encoders shared by CURL (RL from pixels) and MoCo (pretraining).

- :class:`PixelEncoder`: CURL's small conv encoder for frame stacks, ``(B, C, H, W) -> (B, F)``.
- :class:`ResNetBackbone`: torchvision ResNet-18/50 without the classifier, ``(B, C, H, W) ->
  (B, 512 | 2048)``.
- :class:`ViTBackbone`: torchvision's VisionTransformer (ViT-S/16, ViT-B/16, a tiny test size)
  with MoCo v3's stability measures, ``(B, C, H, W) -> (B, hidden_dim)`` (class token).
- :class:`ProjectionHead`: linear or MLP head mapping features to the contrastive space,
  including MoCo v3's official projector and predictor MLPs (kind ``"v3"``).
- :func:`make_backbone`: build any backbone from a name in :data:`BACKBONES`.

Every backbone exposes ``out_dim``. ``uint8`` input is divided by 255 inside the encoder, so
images can stay ``uint8`` until they reach the device.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torchvision
from torch import nn


class ViTSpec(NamedTuple):
    """Size of a Vision Transformer: blocks, attention heads, width, MLP width."""

    num_layers: int
    num_heads: int
    hidden_dim: int
    mlp_dim: int


#: MoCo v3's ViT-Small (12 heads, not DeiT-S's 6) and ViT-Base, and a tiny size for CPU tests.
VIT_SPECS: dict[str, ViTSpec] = {
    "vit_small": ViTSpec(12, 12, 384, 1536),
    "vit_base": ViTSpec(12, 12, 768, 3072),
    "vit_micro": ViTSpec(2, 4, 64, 256),
}
BACKBONES: tuple[str, ...] = ("pixel", "resnet18", "resnet50", *VIT_SPECS)
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("none", "tanh")
PIXEL_INITS: tuple[str, ...] = ("curl", "torch")
HEAD_KINDS: tuple[str, ...] = ("linear", "mlp", "mlp_bn", "v3")


def _uint8_to_unit(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` images -> float in [0, 1]; any other dtype is returned unchanged."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


def conv_output_size(image_size: int, num_layers: int) -> int:
    """Spatial side of :class:`PixelEncoder`'s last conv map (3x3 convs, no padding).

    First conv has stride 2, the others stride 1: ``(S - 3) // 2 + 1 - 2 * (num_layers - 1)``,
    e.g. 84 -> 35 and 100 -> 43 with 4 layers.
    """
    return (image_size - 3) // 2 + 1 - 2 * (num_layers - 1)


@torch.no_grad()
def curl_init_(module: nn.Module) -> None:
    """CURL's (and SAC-AE's) initialisation, in place: Linear weights orthogonal; 3x3 convs
    delta-orthogonal (zero kernel but an orthogonal matrix at its centre, ReLU gain); zero biases.
    LayerNorm keeps its (1, 0) affine parameters."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            m.weight.zero_()
            centre_h, centre_w = m.weight.shape[2] // 2, m.weight.shape[3] // 2
            nn.init.orthogonal_(m.weight[:, :, centre_h, centre_w],
                                gain=nn.init.calculate_gain("relu"))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class PixelEncoder(nn.Module):
    """CURL's pixel encoder: ``(B, C, S, S)`` uint8 or float [0, 1] -> ``(B, feature_dim)``.

    Conv 3x3 stride 2, then ``num_layers - 1`` convs 3x3 stride 1 (``num_filters`` channels, ReLU
    after each, no padding) -> flatten ``(B, conv_out_dim)`` -> Linear -> LayerNorm
    (-> tanh if ``output_activation="tanh"``). ``init="curl"`` (default) initialises the weights as
    CURL does (:func:`curl_init_`); ``init="torch"`` keeps PyTorch's default initialisation.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        feature_dim: int = 50,
        num_layers: int = 4,
        num_filters: int = 32,
        output_activation: str = "none",
        init: str = "curl",
    ) -> None:
        super().__init__()
        if init not in PIXEL_INITS:
            raise ValueError(f"init={init!r} is not one of {PIXEL_INITS}")
        for name, value in (
            ("in_channels", in_channels),
            ("feature_dim", feature_dim),
            ("num_layers", num_layers),
            ("num_filters", num_filters),
        ):
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1")
        side = conv_output_size(image_size, num_layers)
        if side < 1:
            raise ValueError(
                f"image_size={image_size} is too small for num_layers={num_layers} "
                f"(need image_size >= {2 * (2 * num_layers - 1) + 1})"
            )
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation={output_activation!r} is not one of {OUTPUT_ACTIVATIONS}"
            )
        self.in_channels = in_channels
        self.image_size = image_size
        self.feature_dim = feature_dim
        self.out_dim = feature_dim
        self.num_layers = num_layers
        self.num_filters = num_filters
        self.output_activation = output_activation
        self.conv_out_dim = num_filters * side * side

        convs = [nn.Conv2d(in_channels, num_filters, 3, stride=2)]
        convs += [nn.Conv2d(num_filters, num_filters, 3, stride=1) for _ in range(num_layers - 1)]
        self.convs = nn.ModuleList(convs)
        #: compute dtype of the conv stack (``torch.bfloat16``: autocast of the convolutions
        #: only, output cast back to float32); ``None`` = the input's dtype (float32).
        self.conv_dtype: torch.dtype | None = None
        self.fc = nn.Linear(self.conv_out_dim, feature_dim)
        self.ln = nn.LayerNorm(feature_dim)
        if init == "curl":
            curl_init_(self)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (B, in_channels={self.in_channels}, {self.image_size}, "
                f"{self.image_size}), got shape {tuple(x.shape)}"
            )
        if x.shape[-2] != self.image_size or x.shape[-1] != self.image_size:
            raise ValueError(
                f"input is {x.shape[-2]}x{x.shape[-1]} but the encoder was built for "
                f"image_size={self.image_size}"
            )

    def forward_conv(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, S, S)`` uint8 or float [0, 1] -> flat conv features ``(B, conv_out_dim)``
        float32 (computed in :attr:`conv_dtype` when set: the convolutions hold nearly all of
        the encoder's FLOPs, the head after them stays float32)."""
        self._check_input(x)
        h = _uint8_to_unit(x)
        low = self.conv_dtype is not None
        with torch.autocast(h.device.type, dtype=self.conv_dtype, enabled=low):
            for conv in self.convs:
                h = torch.relu(conv(h))
        return h.flatten(1).float() if low else h.flatten(1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Conv features ``(B, conv_out_dim)`` -> Linear -> LayerNorm ``(B, feature_dim)``."""
        out = self.ln(self.fc(h))
        return torch.tanh(out) if self.output_activation == "tanh" else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, S, S)`` -> ``(B, feature_dim)``."""
        return self.head(self.forward_conv(x))

    def tie_conv_weights_to(self, other: PixelEncoder) -> None:
        """Share ``other``'s conv Parameter objects (weights and biases), as CURL's actor does
        with the critic's encoder. The Linear/LayerNorm head stays separate."""
        if not isinstance(other, PixelEncoder):
            raise TypeError(f"other must be a PixelEncoder, got {type(other).__name__}")
        if len(other.convs) != len(self.convs):
            raise ValueError(
                f"num_layers={self.num_layers} differs from other's num_layers={other.num_layers}"
            )
        for mine, theirs in zip(self.convs, other.convs):
            if mine.weight.shape != theirs.weight.shape:
                raise ValueError(
                    f"conv weight shapes differ: {tuple(mine.weight.shape)} vs "
                    f"{tuple(theirs.weight.shape)} (check in_channels and num_filters)"
                )
            mine.weight = theirs.weight
            mine.bias = theirs.bias


_RESNETS = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50}


class ResNetBackbone(nn.Module):
    """torchvision ResNet-18/50 (random init) without ``fc``: ``(B, C, H, W) -> (B, out_dim)``.

    ``out_dim`` is 512 (resnet18) or 2048 (resnet50). ``uint8`` input is divided by 255; float
    input is assumed already normalised (e.g. by ``MocoAugment``).
    Submodules carry torchvision's names, so ``state_dict()`` keys equal torchvision's minus
    ``fc.*``. ``in_channels != 3`` replaces ``conv1``; ``small_input=True`` uses a 3x3 stride-1
    ``conv1`` and no max-pool (CIFAR-style, for 32-84 px images). Works with channels_last input.
    """

    def __init__(
        self,
        arch: str = "resnet18",
        in_channels: int = 3,
        small_input: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if arch not in _RESNETS:
            raise KeyError(f"unknown ResNet arch={arch!r}; valid: {sorted(_RESNETS)}")
        if in_channels < 1:
            raise ValueError(f"in_channels={in_channels} must be >= 1")
        net = _RESNETS[arch](weights=None, zero_init_residual=zero_init_residual)
        if small_input:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if small_input or in_channels != 3:
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.arch = arch
        self.in_channels = in_channels
        self.small_input = small_input
        self.out_dim: int = net.fc.in_features
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.avgpool = net.avgpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> pooled features ``(B, out_dim)``."""
        x = _uint8_to_unit(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def torchvision_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict loadable with ``strict=True`` into ``torchvision.models.<arch>()`` whose
        ``fc`` is ``nn.Identity()`` (with matching conv1/maxpool if modified)."""
        return dict(self.state_dict())


def is_vit(name: str) -> bool:
    """Whether backbone ``name`` is one of the Vision Transformers of :data:`VIT_SPECS`."""
    return name in VIT_SPECS


def sincos_position_embedding(grid: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """MoCo v3's fixed 2-D sine-cosine position embedding of a ``grid x grid`` patch grid:
    ``(grid * grid, dim)``, patches in row-major order (as the patch projection flattens them).

    Patch (row r, column c) gets ``[sin(r w), cos(r w), sin(c w), cos(c w)]`` with the
    ``dim / 4`` frequencies ``w_i = temperature ** (-i / (dim / 4))``. ``dim`` must be a
    multiple of 4."""
    if dim % 4:
        raise ValueError(f"hidden_dim={dim} must be a multiple of 4 for the 2-D sin-cos embedding")
    quarter = dim // 4
    omega = temperature ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                                torch.arange(grid, dtype=torch.float64), indexing="ij")
    row_angles = rows.reshape(-1, 1) * omega  # (grid * grid, dim / 4)
    col_angles = cols.reshape(-1, 1) * omega
    return torch.cat([row_angles.sin(), row_angles.cos(), col_angles.sin(), col_angles.cos()],
                     dim=1).float()


class ViTBackbone(torchvision.models.VisionTransformer):
    """torchvision's ``VisionTransformer`` without classifier: ``(B, C, S, S) -> (B, hidden_dim)``
    (the class token after the final LayerNorm), as MoCo v3 builds its ViTs.

    MoCo v3's choices (Chen, Xie & He 2021, and the official ``vits.py``): a fixed 2-D sin-cos
    position embedding (zero for the class token; ``requires_grad=False``), Xavier-uniform
    weights (query, key and value initialised as three separate matrices), zero biases, class
    token ``N(0, 1e-6)``, and with ``stop_grad_patch=True`` a random patch projection that is
    never trained (``--stop-grad-conv1``). LayerNorm eps 1e-6, no dropout.
    ``state_dict()`` keys are torchvision's minus ``heads.*``: the weights strict-load into
    ``torchvision.models.VisionTransformer(S, patch, *spec)`` whose ``heads`` is
    ``nn.Identity()``. ``in_channels != 3`` (frame stacks) replaces ``conv_proj``.
    ``uint8`` input is divided by 255; float input is assumed already normalised.
    """

    def __init__(self, arch: str = "vit_small", image_size: int = 224, patch_size: int = 16,
                 in_channels: int = 3, stop_grad_patch: bool = True) -> None:
        if arch not in VIT_SPECS:
            raise KeyError(f"unknown ViT arch={arch!r}; valid: {sorted(VIT_SPECS)}")
        if patch_size < 1 or image_size < patch_size or image_size % patch_size:
            raise ValueError(f"image_size={image_size} (crop_size) must be a positive multiple of "
                             f"patch_size={patch_size}")
        if in_channels < 1:
            raise ValueError(f"in_channels={in_channels} must be >= 1")
        spec = VIT_SPECS[arch]
        super().__init__(image_size, patch_size, spec.num_layers, spec.num_heads,
                         spec.hidden_dim, spec.mlp_dim)
        self.heads = nn.Identity()
        if in_channels != 3:
            self.conv_proj = nn.Conv2d(in_channels, spec.hidden_dim, patch_size, patch_size)
        self.arch = arch
        self.in_channels = in_channels
        self.out_dim: int = spec.hidden_dim
        self._init_moco_v3(stop_grad_patch)

    @torch.no_grad()
    def _init_moco_v3(self, stop_grad_patch: bool) -> None:
        dim = self.hidden_dim
        for module in self.modules():
            if isinstance(module, nn.MultiheadAttention):
                # in_proj_weight stacks W_q, W_k, W_v (3 D x D): Xavier bound of one D x D matrix
                bound = math.sqrt(6.0 / (dim + dim))
                nn.init.uniform_(module.in_proj_weight, -bound, bound)
                nn.init.zeros_(module.in_proj_bias)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.class_token, std=1e-6)
        proj = self.conv_proj
        fan_in = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
        bound = math.sqrt(6.0 / (fan_in + dim))
        nn.init.uniform_(proj.weight, -bound, bound)
        nn.init.zeros_(proj.bias)
        proj.weight.requires_grad_(not stop_grad_patch)
        proj.bias.requires_grad_(not stop_grad_patch)
        grid = self.image_size // self.patch_size
        table = torch.cat([torch.zeros(1, dim), sincos_position_embedding(grid, dim)])
        self.encoder.pos_embedding.copy_(table.unsqueeze(0))
        self.encoder.pos_embedding.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, S, S)`` -> class-token features ``(B, hidden_dim)``."""
        return super().forward(_uint8_to_unit(x))

    def torchvision_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict loadable with ``strict=True`` into ``torchvision.models.VisionTransformer``
        of the same size whose ``heads`` is ``nn.Identity()``."""
        return dict(self.state_dict())


class ProjectionHead(nn.Module):
    """Projection ``(B, in_dim) -> (B, out_dim)``.

    kind ``"linear"``: one Linear (MoCo v1). ``"mlp"``: Linear-ReLU-Linear (MoCo v2).
    ``"mlp_bn"``: Linear-BatchNorm1d-ReLU-Linear. ``hidden_dim`` defaults to ``in_dim``.
    ``"v3"``: MoCo v3's official MLP of ``num_layers`` bias-free Linears, each but the last
    followed by BatchNorm1d and ReLU, the last by ``BatchNorm1d(out_dim, affine=False)`` when
    ``last_bn``. The official heads: ResNet projector ``num_layers=2``, ViT projector 3 (both
    ``last_bn``); predictor 2 layers, ``last_bn=False`` for ResNets, ``True`` for ViTs.
    ``num_layers`` and ``last_bn`` apply to ``"v3"`` only.
    """

    def __init__(
        self, in_dim: int, out_dim: int, kind: str = "linear", hidden_dim: int | None = None,
        num_layers: int = 2, last_bn: bool = True,
    ) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"kind={kind!r} is not one of {HEAD_KINDS}")
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1")
        hidden = in_dim if hidden_dim is None else hidden_dim
        if hidden < 1:
            raise ValueError(f"hidden_dim={hidden_dim} must be >= 1")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.kind = kind
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, out_dim)
        elif kind == "mlp":
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
            )
        elif kind == "mlp_bn":
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden, bias=False),
                nn.BatchNorm1d(hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, out_dim),
            )
        else:
            layers: list[nn.Module] = []
            for index in range(num_layers):
                last = index == num_layers - 1
                width_in = in_dim if index == 0 else hidden
                width_out = out_dim if last else hidden
                layers.append(nn.Linear(width_in, width_out, bias=False))
                if not last:
                    layers += [nn.BatchNorm1d(width_out), nn.ReLU(inplace=True)]
                elif last_bn:
                    layers.append(nn.BatchNorm1d(width_out, affine=False))
            self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim)`` -> ``(B, out_dim)``."""
        return self.net(x)


def make_backbone(
    name: str,
    *,
    in_channels: int = 3,
    image_size: int = 84,
    feature_dim: int = 50,
    **kw: Any,
) -> nn.Module:
    """Build a backbone by name (one of :data:`BACKBONES`); the result has ``.out_dim``.

    ``"pixel"`` -> :class:`PixelEncoder` (uses ``image_size`` and ``feature_dim``);
    ``"resnet18"``/``"resnet50"`` -> :class:`ResNetBackbone` (ignores both; ``out_dim`` is fixed);
    ``"vit_small"``/``"vit_base"``/``"vit_micro"`` -> :class:`ViTBackbone` (``image_size`` is its
    input side). Extra keyword arguments go to the constructor (e.g. ``num_layers``,
    ``small_input``, ``patch_size``).
    """
    if name == "pixel":
        return PixelEncoder(in_channels, image_size, feature_dim, **kw)
    if name in _RESNETS:
        return ResNetBackbone(name, in_channels=in_channels, **kw)
    if name in VIT_SPECS:
        return ViTBackbone(name, image_size=image_size, in_channels=in_channels, **kw)
    raise KeyError(f"unknown backbone name={name!r}; valid names: {', '.join(BACKBONES)}")
