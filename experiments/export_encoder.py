"""Export the query backbone of a MoCo pretraining checkpoint.

    python -m experiments.export_encoder --checkpoint runs/X/checkpoint.pt --out enc.pt
    python -m experiments.export_encoder --checkpoint runs/X/checkpoint.pt --out r18.pth \
        --format torchvision

``--format encoder`` (default): the exchange format the agent's ``--init-encoder`` reads
(:func:`curl_moco.io.encoder_export.save_encoder_state`, architecture config checked on load).
``--format torchvision`` (ResNets and ViTs): a plain state dict for
``torchvision.models.resnet18()`` with ``fc = nn.Identity()``, or for
``torchvision.models.VisionTransformer(224, 16, 12, 12, 384, 1536)`` (ViT-S/16; ViT-B/16:
``vit_b_16()``) with ``heads = nn.Identity()``, ``load_state_dict(strict=True)``; a ResNet
pretrained with ``--small-input`` or a frame stack does not fit those models and is refused.
A missing, damaged or foreign checkpoint or an unwritable ``--out`` prints ``error: ...`` and
exits 2.
"""

from __future__ import annotations

# first: a Ctrl-C while torch imports exits 130 without a traceback
import curl_moco.io.quiet_start  # noqa: F401

# isort: split

import sys

from curl_moco.io.checkpoint import CheckpointError, load_checkpoint
from curl_moco.io.checks import check_distinct, check_input_file, check_output_file
from curl_moco.io.encoder_export import ENCODER_KIND
from curl_moco.io.errors import ArgumentParser, UsageError, run_entry_point
from curl_moco.pretrain.export import (
    arch_config,
    build_backbone,
    export_backbone,
    export_config,
    export_torchvision,
    torchvision_differences,
    torchvision_file_name,
)
from curl_moco.pretrain.trainer import CHECKPOINT_KIND


def main(argv: list[str] | None = None) -> str:
    """Export as ``argv`` says; returns the written path (raises
    :class:`~curl_moco.io.errors.UsageError` for a bad setting; :func:`cli` reports it)."""
    import argparse

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run_dir/checkpoint.pt of pretrain_moco")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--format", choices=("encoder", "torchvision"), default="encoder")
    args = p.parse_args(argv)
    check_input_file("checkpoint", args.checkpoint)
    check_distinct({"out": args.out}, {"checkpoint": args.checkpoint})
    check_output_file("out", args.out, replaces_kind=ENCODER_KIND)  # a re-export replaces
    loaded = load_checkpoint(args.checkpoint, kind=CHECKPOINT_KIND)
    cfg = loaded["config"]
    arch = arch_config(cfg)
    backbone = build_backbone(arch)
    if args.format == "torchvision" and not hasattr(backbone, "torchvision_state_dict"):
        raise UsageError(f"format='torchvision' needs a ResNet or ViT; {args.checkpoint} holds a "
                         f"{cfg.get('arch')!r} encoder: use --format encoder")
    differences = torchvision_differences(arch)
    if args.format == "torchvision" and differences:
        raise UsageError(
            f"format='torchvision': {args.checkpoint} was pretrained with "
            f"{' and '.join(differences)}, so its weights do not load into the stock "
            f"torchvision {cfg.get('arch')}; use --format encoder (build_backbone in "
            "curl_moco.pretrain.export rebuilds the same model), or load the run folder's "
            f"{torchvision_file_name(arch)} after replacing conv1 (and maxpool) the same way")
    prefix = "encoder_q.backbone."
    try:
        backbone.load_state_dict({k[len(prefix):]: v for k, v in loaded["payload"]["model"].items()
                                  if k.startswith(prefix)}, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{args.checkpoint}: weights do not fit {arch}: {error}") from error
    if args.format == "torchvision":
        path = export_torchvision(backbone, args.out)
    else:
        path = export_backbone(backbone, export_config(cfg), args.out)
    print(path)
    return str(path)


def cli(argv: list[str] | None = None) -> int:
    """The command line: exit status 0, or 2 for a usage error."""
    return run_entry_point(main, argv, prog="experiments.export_encoder")


if __name__ == "__main__":
    sys.exit(cli())
