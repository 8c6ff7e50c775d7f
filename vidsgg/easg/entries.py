"""Turn one EASG item into the flat tensors the EASG model takes (the "entry", as vidsgg.data.entries for
Action Genome), so `FeatureStore.get(sample, entry)` pools RoI and union features exactly as for Action Genome.

The camera wearer has no box in EASG; each frame gets a whole-frame box standing in for it (the subject of every
pair), so the pair representation keeps STTran's layout [subject | object | union + masks | words]:
    boxes (N,5) float32 [frame, x1, y1, x2, y2] px; per frame first the whole-frame box, then the grounded objects;
    is_person (N,) bool: True for the whole-frame (camera-wearer) boxes;
    labels (N,) long: objects.txt index (0..O-1) of object boxes; CAMERA_WEARER_LABEL (1, Action Genome's
        "person") for the whole-frame boxes, so the subject word embedding starts from AG's person;
    scores (N,) float32 ones;
    im_idx (P,) long frame of each pair; pair_idx (P,2) long (camera-wearer box, object box);
    graph_idx (P,) long graph of each pair (0..G-1); verb_gt (G,) long; features_verb (G, Dv) float32;
    edge_gt (P, E) float32 multi-hot; has_gt (P,) bool (all True); frames: int T.
"""
from __future__ import annotations

import torch

CAMERA_WEARER_LABEL = 1


def build_easg_entry(sample: dict, num_edges: int) -> dict:
    """The entry of one EASG item (see the module docstring); tensors on the CPU."""
    width, height = sample["image_size"]
    boxes, labels, is_person, im_idx, pairs, graph_idx, edge_rows = [], [], [], [], [], [], []
    frame_graph = sample["frame_graph"].tolist()
    for frame, grounded in enumerate(sample["gt_grounding"]):
        wearer = len(boxes)
        boxes.append([float(frame), 0.0, 0.0, float(width), float(height)])
        labels.append(CAMERA_WEARER_LABEL)
        is_person.append(True)
        for obj in grounded:
            pairs.append((wearer, len(boxes)))
            boxes.append([float(frame), *(float(v) for v in obj["bbox"])])
            labels.append(int(obj["obj"]))
            is_person.append(False)
            im_idx.append(frame)
            graph_idx.append(frame_graph[frame])
            edge_rows.append(obj["edge"])
    edge_gt = torch.zeros(len(pairs), num_edges)
    for row, edges in enumerate(edge_rows):
        edge_gt[row, list(edges)] = 1.0
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 5),
            "labels": torch.tensor(labels, dtype=torch.long), "scores": torch.ones(len(boxes)),
            "is_person": torch.tensor(is_person, dtype=torch.bool),
            "im_idx": torch.tensor(im_idx, dtype=torch.long),
            "pair_idx": torch.tensor(pairs, dtype=torch.long).reshape(-1, 2),
            "graph_idx": torch.tensor(graph_idx, dtype=torch.long),
            "verb_gt": torch.tensor([g["verb"] for g in sample["graphs"]], dtype=torch.long),
            "features_verb": sample["verb_features"].float(),
            "edge_gt": edge_gt, "has_gt": torch.ones(len(pairs), dtype=torch.bool),
            "frames": len(sample["gt_grounding"])}
