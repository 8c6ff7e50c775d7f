"""Objects and pairs at evaluation time in SGCLS and SGDET, from predictions only (no ground truth), as the
reference's ObjectClassifier does at test time.

An evaluation entry of SGCLS/SGDET (vidsgg.data.entries, `training=False`) holds every box of each frame, a
`human_candidate` (N,) mask and the union features of the unordered candidate pairs {h, m} (h a candidate, m
another box of its frame). Here:
    SGCLS (`sgcls_objects`): p = the classifier's distribution over the 36 non-background classes
        (softmax(logits[:, 1:]); TEMPURA's GMM head: its mixture without the background class); every box takes
        label argmax(p[:, 1:]) + 2 (a non-person class) and that probability; the human of each frame is the box
        with the highest person probability p[:, 0] (label 1, score p[h, 0]); then, per frame, the boxes of the
        most frequent label (ties: the smallest label, as torch.mode) except the most likely one drop that class
        and take their next best class (which may be "person": such a box is no longer an object).
    SGDET (`sgdet_objects`): labels and scores are the detector's; the human of each frame is its person
        detection (the only candidate), or, in a frame without one, the detection with the highest person
        probability p[:, 0] of the object classifier (label 1, score p[h, 0]).
`pairs_from_predictions` then pairs each frame's human with every other box whose label is not person, in box
order, and takes their union features from the candidates.
"""
from __future__ import annotations

import torch

from vidsgg.data.classes import NUM_CONTACTING, NUM_SPATIAL

PERSON = 1


def _frame_argmax(values: torch.Tensor, frames: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Per frame that has an allowed box: the index of its allowed box with the largest value (the first on
    ties, as torch.argmax). values, frames (N,), allowed (N,) bool -> (F,) long, frames in increasing order."""
    picks = []
    for frame in torch.unique(frames[allowed]).tolist():
        rows = torch.nonzero(allowed & (frames == frame)).flatten()
        picks.append(rows[torch.argmax(values[rows])])
    return torch.stack(picks) if picks else torch.zeros(0, dtype=torch.long, device=values.device)


def sgcls_objects(distribution: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """distribution (N,36) class probabilities without background (column c: class c + 1), frames (N,)
    -> pred_labels (N,), pred_scores (N,), humans (F,) box indices."""
    probs = distribution.detach().clone()
    scores, labels = probs[:, 1:].max(1)
    labels = labels + 2
    humans = _frame_argmax(probs[:, 0], frames, torch.ones_like(frames, dtype=torch.bool))
    labels[humans], scores[humans] = PERSON, probs[humans, 0]
    for frame in torch.unique(frames).tolist():
        rows = torch.nonzero(frames == frame).flatten()
        repeated = int(torch.mode(labels[rows]).values)
        same = rows[labels[rows] == repeated]
        for row in same[torch.argsort(probs[same, repeated - 1])[:-1]]:  # all but the most likely keep it
            probs[row, repeated - 1] = 0
            scores[row], best = probs[row].max(0)
            labels[row] = best + 1
    return labels, scores, humans


def sgdet_objects(distribution: torch.Tensor, entry: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """distribution (N,36) as sgcls_objects, an SGDET evaluation entry -> pred_labels, pred_scores, humans."""
    person_prob = distribution.detach()[:, 0]
    frames = entry["boxes"][:, 0].long()
    humans = _frame_argmax(person_prob, frames, entry["human_candidate"])
    labels, scores = entry["labels"].clone(), entry["scores"].clone()
    inferred = ~entry["is_person"][humans]
    labels[humans] = PERSON
    scores[humans] = torch.where(inferred, person_prob[humans], scores[humans])
    return labels, scores, humans


def pairs_from_predictions(entry: dict, labels: torch.Tensor, humans: torch.Tensor) -> dict:
    """The entry with pairs (human, object) rebuilt from the predicted humans and labels: pair_idx, im_idx,
    union_feat (from the candidates) and empty relation targets (has_gt False)."""
    frames = entry["boxes"][:, 0].long()
    count = len(frames)
    objects = torch.ones(count, dtype=torch.bool, device=frames.device)
    objects[humans] = False
    objects &= labels != PERSON
    human_of_frame = torch.full((int(frames.max()) + 1 if count else 0,), -1, dtype=torch.long, device=frames.device)
    human_of_frame[frames[humans]] = humans
    obj = torch.nonzero(objects & (human_of_frame[frames] >= 0)).flatten()  # box order = frame order
    subject = human_of_frame[frames[obj]]
    candidates = entry["pair_idx"]
    keys = candidates.min(1).values * count + candidates.max(1).values
    order = torch.argsort(keys)
    wanted = torch.minimum(subject, obj) * count + torch.maximum(subject, obj)
    position = torch.searchsorted(keys[order], wanted).clamp_max(max(len(keys) - 1, 0))
    if len(wanted) and not bool((keys[order][position] == wanted).all()):
        raise ValueError("an inferred pair is not among the entry's candidate pairs (built by vidsgg.data.entries)")
    rows = order[position]
    pairs = len(obj)
    return dict(entry, pair_idx=torch.stack([subject, obj], dim=1), im_idx=frames[obj],
                union_feat=entry["union_feat"][rows],
                attention_gt=torch.full((pairs,), -1, dtype=torch.long, device=frames.device),
                spatial_gt=torch.zeros(pairs, NUM_SPATIAL, device=frames.device),
                contacting_gt=torch.zeros(pairs, NUM_CONTACTING, device=frames.device),
                has_gt=torch.zeros(pairs, dtype=torch.bool, device=frames.device))
