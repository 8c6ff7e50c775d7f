"""Scene-graph recall for Action Genome, compatible with STTran's `BasicSceneGraphEvaluator`, vectorised.

Inputs (STTran's formats, never modified):
  gt_annotation: list over the T frames of one video; frame t is
      [{'person_bbox': (1,4) or (4,) xyxy px}, {'class': int, 'bbox': (4,) xyxy px,
        'attention_relationship': long tensor, 'spatial_relationship': long tensor,
        'contacting_relationship': long tensor (category-local indices)}, ...]
  pred: dict of tensors for the same video
      'boxes' (N,5) [frame index, x1, y1, x2, y2] px; 'labels'/'scores' (N,) in PredCLS, else
      'pred_labels'/'pred_scores' (N,); 'im_idx' (P,) frame of each pair; 'pair_idx' (P,2) global box
      indices (subject = person, object); 'attention_distribution' (P,3) logits (softmaxed here, on a copy);
      'spatial_distribution' (P,6) and 'contacting_distribution' (P,17) probabilities.

Triplets and constraints follow the reference: per pair, (person, obj, attention), (obj, person, spatial),
(person, obj, contacting); `with` keeps each row's argmax, `semi` the attention argmax plus every spatial /
contacting predicate above `semi_threshold`, `no` scores every cell by subject·object·predicate score and keeps
the top 100 per frame. Predictions are ranked by that product; a GT triplet is hit when the class triplet is
equal and both boxes have IoU ≥ `iou_threshold` with the legacy +1-pixel areas. R@K is averaged over frames.

Mean recall (`mR@K`), two documented variants (they are not interchangeable):
  per_predicate (TEMPURA, m3sgg): hits and GT counts per predicate are pooled over the whole set, then the
      ratios are averaged over the predicates that occur in the GT;
  per_frame (STKET's mR): each predicate's recall in a frame (0 where the predicate is absent) is averaged over
      all evaluated frames, then over predicates that occur; absent frames deflate it.
Both are returned by `summary()` ("mR@K" under `mean_recall`, the other as "mR@K/<variant>").

Deviation: ties between equal scores are broken by the original order (stable sort) rather than numpy's
reversed-argsort order; with continuous scores this never matters.
"""
from __future__ import annotations

import numpy as np
import torch

from vidsgg.data.classes import NUM_ATTENTION, NUM_PREDICATES, NUM_SPATIAL

KS = (10, 20, 50, 100)
CONSTRAINTS = ("with", "semi", "no")
MEAN_RECALL_VARIANTS = ("per_predicate", "per_frame")
_SPATIAL0, _CONTACT0 = NUM_ATTENTION, NUM_ATTENTION + NUM_SPATIAL
RELATION_FIELDS = ("attention_relationship", "spatial_relationship", "contacting_relationship")


def _numpy(value) -> np.ndarray:
    if torch.is_tensor(value):
        return value.detach().float().cpu().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    return np.asarray(value)


def _flat_list(value) -> list:
    """A tensor / array / sequence as a flat Python list (the GT loop's hot path: no numpy round trip)."""
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        items = value.tolist()
        if not isinstance(items, list):
            return [items]
        if items and isinstance(items[0], list):
            return [v for row in items for v in row]
        return items
    return list(value) if value is not None else []


def box_iou_plus1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of paired boxes (M,4) and (M,4), xyxy, areas with the +1-pixel convention."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1.0, 0.0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1.0, 0.0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
    area_b = (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    return inter / (area_a + area_b - inter)


def ground_truth_triplets(gt_annotation: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GT triplets of one video: (G,4) int [frame, sub_cls, obj_cls, predicate], (G,8) float [sub box, obj box]
    and the GT count per frame (T,). Build them once per video and pass them to every constraint's evaluator
    (`evaluate_video`): nothing is cached between calls, so a GT edited in place is always read afresh."""
    rows, boxes = [], []
    for frame, frame_gt in enumerate(gt_annotation):
        person = _flat_list(frame_gt[0]["person_bbox"])[:4]
        for obj in frame_gt[1:]:
            cls = int(obj["class"])
            obj_box = _flat_list(obj["bbox"])
            person_obj, obj_person = person + obj_box, obj_box + person
            for p in _flat_list(obj["attention_relationship"]):
                rows.append((frame, 1, cls, p))
                boxes.append(person_obj)
            for p in _flat_list(obj["spatial_relationship"]):
                rows.append((frame, cls, 1, p + _SPATIAL0))
                boxes.append(obj_person)
            for p in _flat_list(obj["contacting_relationship"]):
                rows.append((frame, 1, cls, p + _CONTACT0))
                boxes.append(person_obj)
    triplets = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    counts = np.bincount(triplets[:, 0], minlength=len(gt_annotation))
    return triplets, np.asarray(boxes, dtype=np.float64).reshape(-1, 8), counts


def frames_with_relations(gt_annotation: list) -> int:
    """How many frames of a video the evaluator scores (those with at least one GT relation)."""
    return sum(any(len(obj[field]) for obj in frame[1:] for field in RELATION_FIELDS) for frame in gt_annotation)


def skipped_evaluations(dataset, results: dict, max_videos: int = 0) -> dict:
    """What the evaluation over `dataset` (its first `max_videos` items when > 0) did not score because videos
    were unreadable and skipped: {"frames_skipped", "frames_expected"} (Action Genome; "graphs_*" for EASG)."""
    unit, expected = dataset.evaluation_units(max_videos)
    evaluated = int(results.get(f"with/{unit}", results.get(unit, 0)))
    return {f"{unit}_skipped": expected - evaluated, f"{unit}_expected": expected}


def evaluate_video(evaluators, gt_annotation: list, pred: dict) -> None:
    """Score one video under several evaluators (e.g. the three constraints), building its GT triplets once."""
    gt = ground_truth_triplets(gt_annotation)
    for evaluator in evaluators:
        evaluator.evaluate_scene_graph(gt_annotation, pred, gt)


class SceneGraphEvaluator:
    """Accumulates recall over videos; call `evaluate_scene_graph` per video and `summary()` at the end."""

    def __init__(self, mode: str, constraint: str = "with", iou_threshold: float = 0.5, semi_threshold: float = 0.9,
                 mean_recall: str = "per_predicate", top_k_no_constraint: int = 100):
        if mode not in ("predcls", "sgcls", "sgdet"):
            raise ValueError(f"mode must be predcls, sgcls or sgdet, got {mode!r}")
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
        if mean_recall not in MEAN_RECALL_VARIANTS:
            raise ValueError(f"mean_recall must be one of {MEAN_RECALL_VARIANTS}, got {mean_recall!r}")
        self.mode, self.constraint = mode, constraint
        self.iou_threshold, self.semi_threshold = iou_threshold, semi_threshold
        self.mean_recall, self.top_k = mean_recall, top_k_no_constraint
        self.reset()

    def reset(self) -> None:
        self.frame_recalls = {k: [] for k in KS}
        self.frames = 0
        self.predicate_hits = {k: np.zeros(NUM_PREDICATES) for k in KS}
        self.predicate_counts = np.zeros(NUM_PREDICATES)
        self.predicate_frame_recall = {k: np.zeros(NUM_PREDICATES) for k in KS}

    # ------------------------------------------------------------------------------------------ predictions
    def _candidates(self, pred: dict) -> tuple[np.ndarray, ...]:
        """All scored predictions: frame, subject box index, object box index, predicate, score (vectors)."""
        boxes = _numpy(pred["boxes"])
        im_idx = _numpy(pred["im_idx"]).astype(np.int64)
        pairs = _numpy(pred["pair_idx"]).astype(np.int64).reshape(-1, 2)
        obj_scores = _numpy(pred["scores"] if self.mode == "predcls" else pred["pred_scores"]).astype(np.float64)
        att_logits = _numpy(pred["attention_distribution"]).astype(np.float64)
        att = np.exp(att_logits - att_logits.max(1, keepdims=True))
        att /= att.sum(1, keepdims=True)
        spatial = _numpy(pred["spatial_distribution"]).astype(np.float64)
        contact = _numpy(pred["contacting_distribution"]).astype(np.float64)
        h, o = pairs[:, 0], pairs[:, 1]
        rows = np.arange(len(pairs))
        if self.constraint == "with" or self.constraint == "semi":
            att_k = att.argmax(1)
            parts = [(im_idx, h, o, att_k, att[rows, att_k])]
            if self.constraint == "with":
                sp_k, ct_k = spatial.argmax(1), contact.argmax(1)
                parts += [(im_idx, o, h, sp_k + _SPATIAL0, spatial[rows, sp_k]),
                          (im_idx, h, o, ct_k + _CONTACT0, contact[rows, ct_k])]
            else:
                r, k = np.nonzero(spatial > self.semi_threshold)
                parts.append((im_idx[r], o[r], h[r], k + _SPATIAL0, spatial[r, k]))
                r, k = np.nonzero(contact > self.semi_threshold)
                parts.append((im_idx[r], h[r], o[r], k + _CONTACT0, contact[r, k]))
        else:  # no constraint: every cell of the pair's three rows
            parts = []
            for dist, offset, reverse in ((att, 0, False), (spatial, _SPATIAL0, True), (contact, _CONTACT0, False)):
                n = dist.shape[1]
                sub, obj = (o, h) if reverse else (h, o)
                parts.append((np.repeat(im_idx, n), np.repeat(sub, n), np.repeat(obj, n),
                              np.tile(np.arange(n), len(pairs)) + offset, dist.reshape(-1)))
        frame, sub, obj, predicate, score = (np.concatenate(x) for x in zip(*parts))
        score = obj_scores[sub] * obj_scores[obj] * score
        labels = _numpy(pred["labels"] if self.mode == "predcls" else pred["pred_labels"]).astype(np.int64)
        return frame, labels[sub], labels[obj], predicate, score, boxes[sub, 1:5], boxes[obj, 1:5]

    # -------------------------------------------------------------------------------------------- matching
    def evaluate_scene_graph(self, gt_annotation: list, pred: dict, gt_triplets: tuple | None = None) -> dict:
        """Score one video; returns this video's per-frame recalls {K: (T,) array} and adds them to the totals.
        `gt_triplets`: `ground_truth_triplets(gt_annotation)` when the caller already built them."""
        gt, gt_boxes, gt_counts = gt_triplets if gt_triplets is not None else ground_truth_triplets(gt_annotation)
        frame, sub_cls, obj_cls, predicate, score, sub_box, obj_box = self._candidates(pred)

        # Rank within each frame by descending score (stable), cut to top-k for the no-constraint setting.
        order = np.lexsort((-score, frame))
        frame, sub_cls, obj_cls, predicate = frame[order], sub_cls[order], obj_cls[order], predicate[order]
        sub_box, obj_box = sub_box[order], obj_box[order]
        starts = np.searchsorted(frame, frame, side="left")
        rank = np.arange(len(frame)) - starts
        if self.constraint == "no":
            keep = rank < self.top_k
            frame, sub_cls, obj_cls, predicate, rank = frame[keep], sub_cls[keep], obj_cls[keep], predicate[keep], rank[keep]
            sub_box, obj_box = sub_box[keep], obj_box[keep]

        # Join predictions to GT on (frame, subject class, object class, predicate), then test both IoUs.
        def key(f, s, o, p):
            return ((f * 64 + s) * 64 + o) * 32 + p
        pred_key = key(frame, sub_cls, obj_cls, predicate)
        by_key = np.argsort(pred_key, kind="stable")
        sorted_key = pred_key[by_key]
        gt_key = key(gt[:, 0], gt[:, 1], gt[:, 2], gt[:, 3])
        lo = np.searchsorted(sorted_key, gt_key, side="left")
        hi = np.searchsorted(sorted_key, gt_key, side="right")
        n_match = hi - lo
        gt_of = np.repeat(np.arange(len(gt)), n_match)
        offsets = np.arange(n_match.sum()) - np.repeat(np.cumsum(n_match) - n_match, n_match)
        cand = by_key[np.repeat(lo, n_match) + offsets]
        hit = ((box_iou_plus1(gt_boxes[gt_of, :4], sub_box[cand]) >= self.iou_threshold)
               & (box_iou_plus1(gt_boxes[gt_of, 4:], obj_box[cand]) >= self.iou_threshold))
        best_rank = np.full(len(gt), np.iinfo(np.int64).max)
        np.minimum.at(best_rank, gt_of[hit], rank[cand[hit]])

        evaluated = gt_counts > 0  # frames without GT relations have no recall (the reference would divide by 0)
        n_frames = int(evaluated.sum())
        self.frames += n_frames
        gt_frame, gt_pred = gt[:, 0], gt[:, 3]
        self.predicate_counts += np.bincount(gt_pred, minlength=NUM_PREDICATES)
        # GT count per (frame, predicate), for the per-frame mean recall.
        fp_counts = np.bincount(gt_frame * NUM_PREDICATES + gt_pred, minlength=len(gt_counts) * NUM_PREDICATES)
        out = {}
        for k in KS:
            hit_k = (best_rank < k).astype(np.float64)
            frame_hits = np.bincount(gt_frame, weights=hit_k, minlength=len(gt_counts))
            recall = frame_hits[evaluated] / gt_counts[evaluated]
            self.frame_recalls[k].extend(recall.tolist())
            out[k] = recall
            self.predicate_hits[k] += np.bincount(gt_pred, weights=hit_k, minlength=NUM_PREDICATES)
            fp_hits = np.bincount(gt_frame * NUM_PREDICATES + gt_pred, weights=hit_k,
                                  minlength=len(gt_counts) * NUM_PREDICATES)
            ratio = np.divide(fp_hits, fp_counts, out=np.zeros_like(fp_hits), where=fp_counts > 0)
            self.predicate_frame_recall[k] += ratio.reshape(-1, NUM_PREDICATES).sum(0)
        return out

    def summary(self) -> dict:
        """{"R@10", "R@20", "R@50", "R@100"} as fractions, "mR@K" under `mean_recall`, "mR@K/<variant>" for both
        variants, and "frames" (how many frames were scored)."""
        present = self.predicate_counts > 0
        result: dict[str, float] = {"frames": float(self.frames)}
        for k in KS:
            result[f"R@{k}"] = float(np.mean(self.frame_recalls[k])) if self.frames else 0.0
            pooled = self.predicate_hits[k][present] / self.predicate_counts[present]
            per_frame = self.predicate_frame_recall[k][present] / max(1, self.frames)
            result[f"mR@{k}/per_predicate"] = float(pooled.mean()) if present.any() else 0.0
            result[f"mR@{k}/per_frame"] = float(per_frame.mean()) if present.any() else 0.0
            result[f"mR@{k}"] = result[f"mR@{k}/{self.mean_recall}"]
        return result

    def per_predicate_recall(self, k: int = 20) -> np.ndarray:
        """(26,) pooled recall per predicate at K (NaN where the predicate never occurs in the GT)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.predicate_hits[k] / self.predicate_counts
