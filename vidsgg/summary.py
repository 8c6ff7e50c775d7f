"""Parameter counts of a model at paper size, built on the meta device (no memory used).

    python -m vidsgg.summary -model sttran -mode predcls [any architecture flag of train.py]

Prints the parameters per top-level part, the frozen backbone separately (it is not trained), and ends with
`total_params: N` (the trained model, backbone excluded).
"""
from __future__ import annotations

import sys

import torch
import torchvision

from vidsgg.features.backbone import channels
from vidsgg.models.build import build_model
from vidsgg.options import train_parser
from vidsgg.option_checks import validate


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = train_parser()
    parser.prog = "python -m vidsgg.summary"
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.dataset == "easg":
        parser.error("-dataset easg: the EASG model's sizes come from the dataset's class lists; count it with "
                     "train.py's log line instead")
    args.detections = args.detections or "(not read: the model does not depend on the detections)"
    args = validate(args, parser)
    c3, c4 = channels(args.backbone_depth)
    with torch.device("meta"):
        model = build_model(args, c4, c3)
        backbone = getattr(torchvision.models, f"resnet{args.backbone_depth}")(weights=None)
    print(f"{args.model} ({args.mode}), pair width {3 * args.proj_dim + 2 * args.embed_dim}")
    for name, child in model.named_children():
        print(f"  {name:<24} {count(child):>12,d}")
    backbone_params = count(backbone) - count(backbone.fc)
    print(f"  {'(frozen ResNet-' + str(args.backbone_depth) + ')':<24} {backbone_params:>12,d}  not trained, not counted")
    total = count(model)
    print(f"total_params: {total}")
    return total


if __name__ == "__main__":
    main()
