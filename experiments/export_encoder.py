"""Export the query backbone of a MoCo pretraining checkpoint.

    python -m experiments.export_encoder --checkpoint runs/X/checkpoint.pt --out enc.pt
    python -m experiments.export_encoder --checkpoint runs/X/checkpoint.pt --out r18.pth \
        --format torchvision

``--format encoder`` (default): the exchange format the agent's ``--init-encoder`` reads
(:func:`curl_moco.io.encoder_export.save_encoder_state`, architecture config checked on load).
``--format torchvision`` (ResNets and ViTs): a plain state dict for
``torchvision.models.resnet18()`` with ``fc = nn.Identity()``, or for
``torchvision.models.VisionTransformer(224, 16, 12, 12, 384, 1536)`` (ViT-S/16; ViT-B/16:
``vit_b_16()``) with ``heads = nn.Identity()``, ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import argparse

from curl_moco.io.checkpoint import load_checkpoint
from curl_moco.pretrain.export import (
    arch_config,
    build_backbone,
    export_backbone,
    export_config,
    export_torchvision,
)
from curl_moco.pretrain.trainer import CHECKPOINT_KIND


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run_dir/checkpoint.pt of pretrain_moco")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--format", choices=("encoder", "torchvision"), default="encoder")
    args = p.parse_args(argv)
    loaded = load_checkpoint(args.checkpoint, kind=CHECKPOINT_KIND)
    cfg = loaded["config"]
    arch = arch_config(cfg)
    backbone = build_backbone(arch)
    prefix = "encoder_q.backbone."
    backbone.load_state_dict({k[len(prefix):]: v for k, v in loaded["payload"]["model"].items()
                              if k.startswith(prefix)}, strict=True)
    if args.format == "torchvision":
        path = export_torchvision(backbone, args.out)
    else:
        path = export_backbone(backbone, export_config(cfg), args.out)
    print(path)
    return str(path)


if __name__ == "__main__":
    main()
