"""Turn one video's annotation (and, in SGDET, its detections) into the flat tensors the models take.

The "entry" of a video (STTran's name), boxes in original image pixels:
    boxes (N,5) float32 [frame, x1, y1, x2, y2]; labels (N,) long (GT class; 0 for an unmatched detection);
    scores (N,) float32 (1 for GT boxes, the detector score in SGDET); is_person (N,) bool;
    im_idx (P,) long frame of each pair; pair_idx (P,2) long (person box, object box) indices into boxes;
    attention_gt (P,) long in 0..2 (-1 where the pair has no GT, SGDET test only);
    spatial_gt, contacting_gt: (P, 6) and (P, 17) float32 multi-hot;
    has_gt (P,) bool; frames (T,) number of frames.
PredCLS/SGCLS use the GT boxes. SGDET uses detections: the top-scoring person box of each frame and every
other box above `score_threshold`; in training, detections are matched to GT at IoU ≥ 0.5 (they take the GT
class and relations), unmatched ones are dropped and missed GT boxes are added (the person box too when no person
was detected), as the reference does.

Evaluation entries of SGCLS/SGDET (`training=False`) hold no ground truth beyond the boxes of SGCLS: the model
infers the human of each frame, the labels and the pairs (vidsgg.models.objects). They carry
    human_candidate (N,) bool: the boxes that may be the frame's human (SGCLS: every box; SGDET: the person
        detection, or every detection of a frame without one);
    pair_idx (P,2): the unordered candidate pairs (a < b) {human candidate, other box of its frame}, whose union
        features the feature store computes; im_idx their frame; no relation targets (has_gt False);
    SGCLS: labels 0 and is_person False (the GT classes and the GT person are not given).
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from vidsgg.data.classes import NUM_CONTACTING, NUM_SPATIAL


def _multi_hot(indices: torch.Tensor, size: int) -> torch.Tensor:
    row = torch.zeros(size)
    row[indices.long()] = 1.0
    return row


def build_entry(gt_annotation: list, mode: str = "predcls", detections: list[dict] | None = None,
                training: bool = True, score_threshold: float = 0.1, match_iou: float = 0.5) -> dict:
    """The entry of one video (see the module docstring). `detections[t]` = {'boxes' (M,4) xyxy, 'labels' (M,),
    'scores' (M,)} for frame t, required in SGDET."""
    boxes, labels, scores, is_person = [], [], [], []
    im_idx, pairs, attention, spatial, contacting, has_gt = [], [], [], [], [], []

    def add_box(frame, box, label, score, person):
        boxes.append([float(frame), *[float(v) for v in box]])
        labels.append(int(label))
        scores.append(float(score))
        is_person.append(person)
        return len(boxes) - 1

    def add_pair(frame, human, obj, gt_obj):
        im_idx.append(frame)
        pairs.append((human, obj))
        has_gt.append(gt_obj is not None)
        if gt_obj is None:
            attention.append(-1)
            spatial.append(torch.zeros(NUM_SPATIAL))
            contacting.append(torch.zeros(NUM_CONTACTING))
        else:
            attention.append(int(gt_obj["attention_relationship"].reshape(-1)[0]))
            spatial.append(_multi_hot(gt_obj["spatial_relationship"], NUM_SPATIAL))
            contacting.append(_multi_hot(gt_obj["contacting_relationship"], NUM_CONTACTING))

    def add_candidates(frame, rows, candidates):
        """Unordered pairs {h, m} (h < m in box order) for every candidate h and other box m of the frame."""
        for a in rows:
            for b in rows:
                if a < b and (a in candidates or b in candidates):
                    add_pair(frame, a, b, None)

    evaluation = not training and mode in ("sgcls", "sgdet")
    human_candidate: list[bool] = []
    for frame, frame_gt in enumerate(gt_annotation):
        person_gt = np.asarray(frame_gt[0]["person_bbox"], dtype=np.float32).reshape(-1, 4)[0]
        objects = frame_gt[1:]
        if mode == "predcls" or (mode == "sgcls" and training):
            human = add_box(frame, person_gt, 1, 1.0, True)
            for obj in objects:
                add_pair(frame, human, add_box(frame, obj["bbox"], obj["class"], 1.0, False), obj)
            continue
        if mode == "sgcls":  # evaluation: the boxes only
            rows = [add_box(frame, box, 0, 1.0, False) for box in [person_gt] + [o["bbox"] for o in objects]]
            human_candidate += [True] * len(rows)
            add_candidates(frame, rows, set(rows))
            continue
        if detections is None:
            raise ValueError("SGDET needs detections (from vidsgg/train_detector.py or -detections FILE)")
        det = detections[frame]
        det_boxes = torch.as_tensor(det["boxes"], dtype=torch.float32).reshape(-1, 4)
        det_labels = torch.as_tensor(det["labels"], dtype=torch.long).reshape(-1)
        det_scores = torch.as_tensor(det["scores"], dtype=torch.float32).reshape(-1)
        person_rows = torch.nonzero(det_labels == 1).flatten()
        keep = (det_labels != 1) & (det_scores >= score_threshold)
        obj_boxes, obj_labels, obj_scores = det_boxes[keep], det_labels[keep], det_scores[keep]
        best = person_rows[det_scores[person_rows].argmax()] if len(person_rows) else None
        if evaluation:
            rows = []
            if best is not None:
                rows.append(add_box(frame, det_boxes[best], 1, float(det_scores[best]), True))
            rows += [add_box(frame, obj_boxes[d], obj_labels[d], obj_scores[d], False) for d in range(len(obj_boxes))]
            candidates = set(rows[:1]) if best is not None else set(rows)
            human_candidate += [row in candidates for row in rows]
            add_candidates(frame, rows, candidates)
            continue
        if best is not None:
            human = add_box(frame, det_boxes[best], 1, float(det_scores[best]), True)
        else:  # training: the GT person box the detector missed is supplied, as the other missed GT boxes
            human = add_box(frame, person_gt, 1, 1.0, True)
        gt_boxes = torch.tensor(np.stack([o["bbox"] for o in objects]), dtype=torch.float32)
        matched = torch.zeros(len(objects), dtype=torch.bool)
        if len(obj_boxes):
            iou = box_iou(obj_boxes, gt_boxes)
            best_iou, best_gt = iou.max(1)
            for d in torch.nonzero(best_iou >= match_iou).flatten().tolist():
                g = int(best_gt[d])
                add_pair(frame, human, add_box(frame, obj_boxes[d], objects[g]["class"], obj_scores[d], False),
                         objects[g])
                matched[g] = True
        for g in torch.nonzero(~matched).flatten().tolist():  # supplement the GT boxes the detector missed
            add_pair(frame, human, add_box(frame, objects[g]["bbox"], objects[g]["class"], 1.0, False), objects[g])

    entry = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 5),
             "labels": torch.tensor(labels, dtype=torch.long), "scores": torch.tensor(scores),
             "is_person": torch.tensor(is_person, dtype=torch.bool),
             "im_idx": torch.tensor(im_idx, dtype=torch.long),
             "pair_idx": torch.tensor(pairs, dtype=torch.long).reshape(-1, 2),
             "attention_gt": torch.tensor(attention, dtype=torch.long),
             "spatial_gt": torch.stack(spatial) if spatial else torch.zeros(0, NUM_SPATIAL),
             "contacting_gt": torch.stack(contacting) if contacting else torch.zeros(0, NUM_CONTACTING),
             "has_gt": torch.tensor(has_gt, dtype=torch.bool), "frames": len(gt_annotation)}
    if evaluation:
        entry["human_candidate"] = torch.tensor(human_candidate, dtype=torch.bool)
    return entry
