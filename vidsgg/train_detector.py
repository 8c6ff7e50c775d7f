"""Train a torchvision Faster R-CNN on the Action Genome boxes and write the detections file SGDET uses.

    python vidsgg/train_detector.py -data_path DIR -save_path RUN [-backbone_depth 50 -min_size 600 -epochs 10]
    python vidsgg/train_detector.py -data_path DIR -save_path RUN -model_path RUN/detector.tar -epochs 0   # detect only

Writes RUN/detector.tar (model weights, flags; its backbone also loads as `-backbone_weights RUN/detector.tar` for
the relation models) and RUN/detections.pt = {frame key: {'boxes' (M,4) xyxy px, 'labels' (M,) in 1..36,
'scores' (M,)}} for the train and test frames, which `vidsgg/train.py -mode sgdet -detections RUN/detections.pt`
reads. Tiny CPU settings for tests: -backbone_depth 18 -min_size 64 -max_size 96. Single process (the detector is
trained once; the relation models are what the multi-GPU launch is for).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from common import checkpoint
from common.data import image_to_tensor, read_image
from common.log import setup_logger
from common.seed import seed_everything
from vidsgg.data.action_genome import ActionGenome
from vidsgg.data.classes import NUM_OBJECT_CLASSES
from vidsgg.options import StrictParser

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="vidsgg/train_detector.py", allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("-data_path", required=True)
    p.add_argument("-save_path", required=True)
    p.add_argument("-datasize", choices=("mini", "small", "large"), default="large")
    p.add_argument("-backbone_depth", type=int, default=50)
    p.add_argument("-backbone_weights", default=None, help="local torchvision ResNet weights for the FPN backbone")
    p.add_argument("-min_size", type=int, default=600)
    p.add_argument("-max_size", type=int, default=1000)
    p.add_argument("-epochs", type=int, default=10)
    p.add_argument("-lr", type=float, default=0.01)
    p.add_argument("-batch_size", type=int, default=4, help="frames per step")
    p.add_argument("-score_threshold", type=float, default=0.1)
    p.add_argument("-max_detections", type=int, default=100, help="detections kept per frame")
    p.add_argument("-rpn_proposals", type=int, default=1000, help="RPN proposals after NMS at test (2× in training)")
    p.add_argument("-model_path", default=None, help="start from this detector.tar")
    p.add_argument("-seed", type=int, default=0)
    return p


def build_detector(args: argparse.Namespace) -> FasterRCNN:
    backbone = resnet_fpn_backbone(backbone_name=f"resnet{args.backbone_depth}", weights=None, trainable_layers=3)
    if args.backbone_weights:
        state = torch.load(args.backbone_weights, map_location="cpu", weights_only=True)
        backbone.body.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False)
    return FasterRCNN(backbone, num_classes=NUM_OBJECT_CLASSES, min_size=args.min_size, max_size=args.max_size,
                      box_score_thresh=args.score_threshold, box_nms_thresh=0.4,
                      box_detections_per_img=args.max_detections, rpn_post_nms_top_n_test=args.rpn_proposals,
                      rpn_pre_nms_top_n_test=args.rpn_proposals, rpn_post_nms_top_n_train=2 * args.rpn_proposals,
                      rpn_pre_nms_top_n_train=2 * args.rpn_proposals)


def frames_with_targets(dataset: ActionGenome) -> list[tuple[str, str, dict]]:
    """(key, image path, {'boxes', 'labels'}) for every frame: the person box plus the visible objects."""
    items = []
    for index in range(len(dataset)):
        sample = dataset[index]
        for key, path, frame in zip(sample["frame_keys"], sample["frame_paths"], sample["gt_annotation"]):
            boxes = [np.asarray(frame[0]["person_bbox"]).reshape(-1, 4)[0]] + [o["bbox"] for o in frame[1:]]
            labels = [1] + [o["class"] for o in frame[1:]]
            items.append((key, path, {"boxes": torch.tensor(np.stack(boxes), dtype=torch.float32),
                                      "labels": torch.tensor(labels, dtype=torch.long)}))
    return items


def main(argv: list[str] | None = None) -> Path:
    args = parser().parse_args(argv)
    run = Path(args.save_path)
    logger = setup_logger(run, name="detector", filename="detector_log.txt", packages=("vidsgg",))
    seed_everything(args.seed)
    model = build_detector(args)
    if args.model_path:
        model.load_state_dict(checkpoint.load(args.model_path)["model"])
    train_items = frames_with_targets(ActionGenome(args.data_path, "train", "sgdet", args.datasize))
    test_items = frames_with_targets(ActionGenome(args.data_path, "test", "sgdet", args.datasize))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=args.lr, momentum=0.9,
                                weight_decay=1e-4)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_items), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), args.batch_size):
            chunk = [train_items[i] for i in order[start:start + args.batch_size]]
            images = [image_to_tensor(read_image(path)) for _, path, _ in chunk]
            losses = model(images, [target for _, _, target in chunk])
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            total += float(loss.detach()) * len(chunk)
        logger.info("Epoch %d/%d - Loss: %.4f", epoch + 1, args.epochs, total / max(1, len(train_items)))
    checkpoint.save(run / "detector.tar", {"model": model.state_dict(), "config": vars(args)})

    model.eval()
    detections = {}
    with torch.no_grad():
        for key, path, _ in train_items + test_items:
            out = model([image_to_tensor(read_image(path))])[0]
            detections[key] = {"boxes": out["boxes"], "labels": out["labels"], "scores": out["scores"]}
    torch.save(detections, run / "detections.pt")
    logger.info("Wrote %s (%d frames) and %s", run / "detections.pt", len(detections), run / "detector.tar")
    return run / "detections.pt"


if __name__ == "__main__":
    main()
