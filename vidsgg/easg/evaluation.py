"""EASG recall@K as the reference (EASG train_with_EASG.py) computes it, vectorised per graph.

Per graph (the verb and its objects):
  * GT triplets (verb, object, edge) come from the graph's FIRST grounded frame (the reference's choice); its
    objects are the graph's object slots.
  * A slot's scores are means over every pair of the graph whose object has the slot's GT class (all frames):
    edge scores (sigmoid), object scores (softmax; one-hot GT in edgecls); the verb score is the graph's verb
    softmax (the reference averages a per-box copy of it: the same value).
  * Candidates, n = number of slots, max K = 50, scores added (verb + object + edge):
      edgecls: (GT verb, GT object, top-r edges), r = 1 with / ceil(50 / n) no constraint;
      sgcls:   (GT verb, top-o objects, top-r edges), r = 1 / 5, o = ceil(50 / (r·n));
      easgcls: (top-5 verbs, top-o objects, top-r edges), r = 1 / 5, o = ceil(50 / (5·r·n)).
  * Candidates are ranked by score; R@K of a graph = |GT triplets equal to one of the top K| / |GT|;
    the reported R@K is the mean over graphs (fractions here; the reference prints percentages).
The reference computes no mean recall; `mR@K` here is per edge class: per_predicate pools hits and counts over
the split then averages the edge classes that occur; per_frame (per graph here) averages each class's per-graph
recall over all graphs (0 where absent), as STKET's variant. Ties are broken by enumeration order (stable sort;
the reference's unstable argsort leaves them unspecified). Deviation: the reference finds a graph's frames by
`frame_name.split('_')[0]`, which merges graphs whose uid contains '_' (m3sgg's '<clip>_graph_<i>' uids); here
the frames of a graph are the ones the loader assigned to it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

KS = (10, 20, 50)
CONSTRAINTS = ("with", "no")
MEAN_RECALL_VARIANTS = ("per_predicate", "per_frame")
TOP_VERBS, TOP_EDGES_WITH, TOP_EDGES_NO = 5, 1, 5


def _top(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    ordered = torch.sort(scores, dim=-1, descending=True, stable=True)
    k = max(1, min(k, scores.shape[-1]))
    return ordered.values[..., :k], ordered.indices[..., :k]


def ranked_triplets(mode: str, constraint: str, verb: int, objects: torch.Tensor, edge_scores: torch.Tensor,
                    object_scores: torch.Tensor | None = None, verb_scores: torch.Tensor | None = None,
                    max_k: int = max(KS)) -> torch.Tensor:
    """Candidate triplets of one graph, best first: (M, 3) long (verb, object, edge).

    objects (n,) GT classes of the slots; edge_scores (n, E); object_scores (n, O) (sgcls/easgcls);
    verb_scores (V,) (easgcls)."""
    n = len(objects)
    if mode == "edgecls":
        top_edges = TOP_EDGES_WITH if constraint == "with" else math.ceil(max_k / n)
        top_objects = top_verbs = 1
    else:
        top_edges = TOP_EDGES_WITH if constraint == "with" else TOP_EDGES_NO
        top_verbs = TOP_VERBS if mode == "easgcls" else 1
        top_objects = math.ceil(max_k / (top_verbs * top_edges * n))
    edge_val, edge_idx = _top(edge_scores, top_edges)                                  # (n, r)
    if mode == "edgecls":
        obj_val, obj_idx = torch.zeros(n, 1), objects.view(n, 1)
    else:
        obj_val, obj_idx = _top(object_scores, top_objects)                            # (n, o)
    if mode == "easgcls":
        verb_val, verb_idx = _top(verb_scores, top_verbs)                              # (v,)
    else:
        verb_val, verb_idx = torch.zeros(1), torch.tensor([verb])
    score = verb_val[:, None, None, None] + obj_val[None, :, :, None] + edge_val[None, :, None, :]
    shape = score.shape                                                               # (v, n, o, r)
    triplets = torch.stack([verb_idx[:, None, None, None].expand(shape), obj_idx[None, :, :, None].expand(shape),
                            edge_idx[None, :, None, :].expand(shape)], dim=-1).reshape(-1, 3)
    order = torch.sort(score.flatten(), descending=True, stable=True).indices
    return triplets[order]


class EASGEvaluator:
    """Accumulates the recall of graphs; `evaluate_video` per item, `summary()` at the end."""

    def __init__(self, mode: str, num_edges: int, mean_recall: str = "per_predicate"):
        if mode not in ("easgcls", "sgcls", "edgecls"):
            raise ValueError(f"EASG mode must be easgcls, sgcls or edgecls, got {mode!r}")
        if mean_recall not in MEAN_RECALL_VARIANTS:
            raise ValueError(f"mean_recall must be one of {MEAN_RECALL_VARIANTS}, got {mean_recall!r}")
        self.mode, self.num_edges, self.mean_recall = mode, num_edges, mean_recall
        self.recalls = {c: {k: [] for k in KS} for c in CONSTRAINTS}
        self.edge_hits = {c: {k: np.zeros(num_edges) for k in KS} for c in CONSTRAINTS}
        self.edge_graph_recall = {c: {k: np.zeros(num_edges) for k in KS} for c in CONSTRAINTS}
        self.edge_counts = np.zeros(num_edges)
        self.graphs = 0

    def add_graph(self, gt: torch.Tensor, ranked: dict[str, torch.Tensor]) -> None:
        """gt (G,3) long (verb, object, edge); ranked {"with": (M,3), "no": (M',3)} best first."""
        counts = np.bincount(gt[:, 2].numpy(), minlength=self.num_edges).astype(float)
        self.edge_counts += counts
        self.graphs += 1
        present = counts > 0
        for constraint, triplets in ranked.items():
            match = (gt[:, None, :] == triplets[None, :, :]).all(-1)                   # (G, M)
            for k in KS:
                hit = match[:, :k].any(1)
                self.recalls[constraint][k].append(float(hit.sum()) / len(gt))
                hits = np.bincount(gt[hit, 2].numpy(), minlength=self.num_edges)
                self.edge_hits[constraint][k] += hits
                self.edge_graph_recall[constraint][k][present] += hits[present] / counts[present]

    def evaluate_video(self, sample: dict, entry: dict, pred: dict) -> None:
        """sample: an EASG item; entry: its entry (graph_idx, labels, pair_idx); pred: the model's output."""
        pair_graph = entry["graph_idx"].cpu()
        pair_object = entry["labels"].cpu()[entry["pair_idx"][:, 1].cpu()]
        edge_scores = pred["edge_distribution"].detach().float().cpu()
        object_scores = verb_scores = None
        if self.mode != "edgecls":
            object_scores = torch.softmax(pred["obj_logits"].detach().float().cpu(), 1)[entry["pair_idx"][:, 1].cpu()]
        if self.mode == "easgcls":
            verb_scores = torch.softmax(pred["verb_logits"].detach().float().cpu(), 1)
        for g, graph in enumerate(sample["graphs"]):
            first = sample["gt_grounding"][graph["frames"][0]]
            objects = torch.tensor([o["obj"] for o in first], dtype=torch.long)
            gt = torch.tensor([(graph["verb"], o["obj"], e) for o in first for e in o["edge"]], dtype=torch.long)
            # (n, P_g) averaging weights: the pairs of this graph whose object has the slot's class
            rows = pair_graph == g
            weights = (pair_object[rows][None, :] == objects[:, None]).float()
            weights = weights / weights.sum(1, keepdim=True)
            slot_edges = weights @ edge_scores[rows]
            slot_objects = weights @ object_scores[rows] if object_scores is not None else None
            ranked = {c: ranked_triplets(self.mode, c, graph["verb"], objects, slot_edges, slot_objects,
                                         verb_scores[g] if verb_scores is not None else None) for c in CONSTRAINTS}
            self.add_graph(gt, ranked)

    def summary(self) -> dict:
        """{"with/R@10", ..., "no/R@50", "<c>/mR@K" (under `mean_recall`), "<c>/mR@K/<variant>", "graphs"}."""
        present = self.edge_counts > 0
        result: dict[str, float] = {"graphs": float(self.graphs)}
        for c in CONSTRAINTS:
            for k in KS:
                result[f"{c}/R@{k}"] = float(np.mean(self.recalls[c][k])) if self.graphs else 0.0
                pooled = self.edge_hits[c][k][present] / self.edge_counts[present]
                per_graph = self.edge_graph_recall[c][k][present] / max(1, self.graphs)
                result[f"{c}/mR@{k}/per_predicate"] = float(pooled.mean()) if present.any() else 0.0
                result[f"{c}/mR@{k}/per_frame"] = float(per_graph.mean()) if present.any() else 0.0
                result[f"{c}/mR@{k}"] = result[f"{c}/mR@{k}/{self.mean_recall}"]
        return result
