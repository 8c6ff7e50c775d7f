"""STKET (Pu, Chen, Wu, Lu, Lin; IEEE TIP 2024): STTran's pair features with spatial and temporal knowledge priors,
three transformer branches and three sets of relation heads.

Branches (d = 3·proj + 2·embed = 1936 at paper size; every layer: q = W_q(x + prior), k = W_k(x + prior),
v = W_v(x), multi-head attention with the position embedding on q and k, post-LayerNorm):
    encoder   (-enc_layer_num): over the pairs of each frame; prior = MLP(initial prior of the object's class).
    decoder   (-dec_layer_num): over windows of `-window` consecutive frames (2), frame embedding; prior of a pair
              whose frame is followed by another in the window = MLP(mean specific prior of its class over the
              contacts of its class in that frame), else (and in frame 0) MLP(initial prior). Frame t takes its
              output from the window that ends at t.
    ensemble  (2 layers): per pair, the sequence of (encoder + decoder)/2 features of the same object class in up
              to -window_size frames back to the current one (each step at most MAX_GAP frames), slot embedding,
              no prior; the output at the current frame gives the final prediction.
The encoder and decoder are applied -N_layer times (shared weights). Priors (vidsgg.models.priors) are learnable
parameters initialised from the counts; the MLP is 26→128→256→512→d without activations, as the reference.
Contact state of a (class, frame): {not_contacting} if the encoder's contacting argmax is not_contacting, else
its contacts with probability ≥ -pred_contact_threshold (the encoder's predictions, detached). Threshold 1.0:
the reference then reads the GT contacts, in training and in testing; here only in training (teacher forcing),
as evaluation must not see labels. Prior-only predictions: the encoder heads on the spatial prior
(-spatial_prior_loss) and the decoder heads on the temporal prior = MLP(specific prior of the class's contact
state in its previous frame, at most MAX_GAP back; else the current frame) (-temporal_prior_loss).

forward(entry) returns the STTran prediction dict (vidsgg.models.sttran) with the ensemble's distributions, plus
encoder_/decoder_/spatial_prior_/temporal_prior_{attention,spatial,contacting}_distribution (P,3|6|17).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch
from torch import nn

from vidsgg.data.classes import NUM_ATTENTION, NUM_CONTACTING, NUM_OBJECT_CLASSES, NUM_PREDICATES, NUM_SPATIAL
from vidsgg.models.layers import group_slots
from vidsgg.models.losses import relation_losses
from vidsgg.models.priors import MAX_GAP
from vidsgg.models.sttran import STTran, STTranConfig, empty_relations

NOT_CONTACTING = 8
CATEGORIES = ("attention", "spatial", "contacting")


@dataclass
class STKETConfig(STTranConfig):
    enc_layer_num: int = 2
    dec_layer_num: int = 2
    N_layer: int = 1
    window_size: int = 4
    pred_contact_threshold: float = 0.8
    use_spatial_prior: bool = False
    spatial_prior_loss: bool = False
    use_temporal_prior: bool = False
    temporal_prior_loss: bool = False
    ensemble_layers: int = 2  # fixed in the reference

    def __post_init__(self):
        self.spatial_layers, self.temporal_layers = self.enc_layer_num, self.dec_layer_num
        for loss, use in (("spatial_prior_loss", "use_spatial_prior"), ("temporal_prior_loss", "use_temporal_prior")):
            if getattr(self, loss) and not getattr(self, use):
                raise ValueError(f"-{loss} needs -{use} (the loss trains the heads on that prior)")
        if not 0.0 <= self.pred_contact_threshold <= 1.0:
            raise ValueError(f"-pred_contact_threshold must be in [0, 1], got {self.pred_contact_threshold}")


class PriorLayer(nn.Module):
    """STKET's attention layer. x (B,L,d), pad (B,L) True = padding, prior / pos (B,L,d) or None -> (B,L,d).
    The decoder layers have no LayerNorm after the feed-forward block (`ffn_norm=False`), as the reference."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, ffn_norm: bool = True):
        super().__init__()
        self.w_q, self.w_k, self.w_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim) if ffn_norm else nn.Identity()
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x, pad, prior=None, pos=None):
        qk = x if prior is None else x + prior
        q, k, v = self.w_q(qk), self.w_k(qk), self.w_v(x)
        if pos is not None:
            q, k = q + pos, k + pos
        attended, _ = self.attention(q, k, v, key_padding_mask=pad, need_weights=False)
        x = self.norm1(x + self.dropout1(attended))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class PriorEmbedding(nn.Module):
    """Learnable prior tables, initial (37,26) and optionally specific (37,17,26), and the MLP to d."""

    def __init__(self, dim: int, initial: torch.Tensor, specific: torch.Tensor | None = None):
        super().__init__()
        self.initial = nn.Parameter(initial.detach().clone().float())
        self.specific = None if specific is None else nn.Parameter(specific.detach().clone().float())
        self.mlp = nn.Sequential(nn.Linear(NUM_PREDICATES, 128), nn.Linear(128, 256), nn.Linear(256, 512),
                                 nn.Linear(512, dim))

    def initial_prior(self, classes: torch.Tensor) -> torch.Tensor:
        """classes (P,) -> (P,d)."""
        return self.mlp(self.initial[classes])

    def state_prior(self, classes: torch.Tensor, contacts: torch.Tensor) -> torch.Tensor:
        """classes (P,), contacts (P,17) bool -> (P,d): mean specific prior over the contacts (initial if none)."""
        count = contacts.sum(1, keepdim=True)
        weights = contacts.to(self.initial.dtype) / count.clamp_min(1)
        mixed = torch.einsum("pc,pcr->pr", weights, self.specific[classes])
        return self.mlp(torch.where(count > 0, mixed, self.initial[classes]))


class RelationHeads(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.attention = nn.Linear(dim, NUM_ATTENTION)
        self.spatial = nn.Linear(dim, NUM_SPATIAL)
        self.contacting = nn.Linear(dim, NUM_CONTACTING)

    def forward(self, x: torch.Tensor, prefix: str = "") -> dict:
        """x (P,d) -> attention logits (P,3), spatial (P,6) and contacting (P,17) sigmoid probabilities."""
        return {f"{prefix}attention_distribution": self.attention(x),
                f"{prefix}spatial_distribution": torch.sigmoid(self.spatial(x)),
                f"{prefix}contacting_distribution": torch.sigmoid(self.contacting(x))}


def object_history(classes: list[int], frames: list[int], scores: list[float], window_size: int):
    """Per pair: the pair holding its (class, frame) state (highest score, the last one among ties), that of its
    class's previous frame (≤ MAX_GAP back, else the current frame), and the ensemble sequence: pairs of the same
    class in up to `window_size` frames, oldest first, the pair itself last, consecutive frames ≤ MAX_GAP apart.
    Returns now (P,), previous (P,), sequence (P,W) long (0 where padded), pad (P,W) bool."""
    holder: dict[tuple[int, int], int] = {}
    for p, key in enumerate(zip(classes, frames)):
        if key not in holder or scores[p] >= scores[holder[key]]:
            holder[key] = p
    frames_of: dict[int, list[int]] = {}
    for cls, frame in sorted(holder):
        frames_of.setdefault(cls, []).append(frame)
    now, previous, sequences = [], [], []
    for p, (cls, frame) in enumerate(zip(classes, frames)):
        earlier = frames_of[cls][:bisect.bisect_left(frames_of[cls], frame)]
        now.append(holder[(cls, frame)])
        recent = earlier and frame - earlier[-1] <= MAX_GAP
        previous.append(holder[(cls, earlier[-1])] if recent else holder[(cls, frame)])
        chain, last = [p], frame
        for before in reversed(earlier):
            if len(chain) == window_size or last - before > MAX_GAP:
                break
            chain.append(holder[(cls, before)])
            last = before
        sequences.append(chain[::-1])
    width = max((len(s) for s in sequences), default=1)
    sequence = torch.tensor([s + [0] * (width - len(s)) for s in sequences], dtype=torch.long).reshape(-1, width)
    pad = torch.tensor([[False] * len(s) + [True] * (width - len(s)) for s in sequences]).reshape(-1, width)
    return torch.tensor(now, dtype=torch.long), torch.tensor(previous, dtype=torch.long), sequence, pad


class STKET(STTran):
    def __init__(self, config: STKETConfig, word_table: torch.Tensor | None = None, priors: dict | None = None):
        super().__init__(config, word_table)
        del self.transformer, self.attention_head, self.spatial_head, self.contacting_head
        d, c = config.dim, config
        if priors is None:  # from_config / meta device: the checkpoint's state dict brings the values
            priors = {"initial": torch.zeros(NUM_OBJECT_CLASSES, NUM_PREDICATES),
                      "specific": torch.zeros(NUM_OBJECT_CLASSES, NUM_CONTACTING, NUM_PREDICATES)}
        self.encoder = nn.ModuleList(PriorLayer(d, c.heads, c.ffn_dim, c.dropout) for _ in range(c.enc_layer_num))
        self.decoder = nn.ModuleList(PriorLayer(d, c.heads, c.ffn_dim, c.dropout, ffn_norm=False)
                                     for _ in range(c.dec_layer_num))
        self.ensemble = nn.ModuleList(PriorLayer(d, c.heads, c.ffn_dim, c.dropout, ffn_norm=False)
                                      for _ in range(c.ensemble_layers))
        self.frame_embedding = nn.Embedding(c.window, d)
        self.slot_embedding = nn.Embedding(c.window_size, d)
        nn.init.uniform_(self.frame_embedding.weight)
        nn.init.uniform_(self.slot_embedding.weight)
        self.spatial_prior = PriorEmbedding(d, priors["initial"]) if c.use_spatial_prior else None
        self.temporal_prior = (PriorEmbedding(d, priors["initial"], priors["specific"])
                               if c.use_temporal_prior else None)
        self.branch_heads = nn.ModuleDict({name: RelationHeads(d) for name in ("encoder", "decoder", "ensemble")})

    @classmethod
    def from_config(cls, config: dict) -> STKET:
        return cls(STKETConfig(**config))

    def encode(self, x: torch.Tensor, im_idx: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        """Spatial encoder over the pairs of each frame: (P,d) -> (P,d)."""
        index, pad = group_slots(im_idx, torch.unique(im_idx))
        y, p = x[index], None if prior is None else prior[index]
        for layer in self.encoder:
            y = layer(y, pad, p)
        return y[~pad]

    def decode(self, x, im_idx, state_prior, initial_prior) -> torch.Tensor:
        """Temporal decoder over sliding windows: (P,d) -> (P,d); priors (P,d) or None."""
        num_frames = int(im_idx.max()) + 1
        span = min(self.config.window, num_frames)
        starts = torch.arange(num_frames - span + 1, device=im_idx.device)
        index, pad = group_slots(im_idx, starts, span)
        keep = ~pad.all(1)  # windows without pairs (possible with detections) would give NaN attention
        starts, index, pad = starts[keep], index[keep], pad[keep]
        frame = im_idx[index]
        position = (frame - starts[:, None]).clamp(0, span - 1)
        prior = None
        if state_prior is not None:
            use_state = ((position < span - 1) & (frame > 0))[..., None]
            prior = torch.where(use_state, state_prior[index], initial_prior[index])
        y = x[index]
        for layer in self.decoder:
            y = layer(y, pad, prior, self.frame_embedding(position))
        # Pair p takes its output from the window starting at max(0, frame - span + 1), at its offset there.
        window_row = torch.full((int(starts.max()) + 1,), -1, dtype=torch.long, device=x.device)
        window_row[starts] = torch.arange(len(starts), device=x.device)
        rows = window_row[(im_idx - span + 1).clamp_min(0)]
        return y[rows, torch.arange(len(im_idx), device=x.device) - index[rows, 0]]

    def contact_states(self, contacting: torch.Tensor, entry: dict) -> torch.Tensor:
        """(P,17) probabilities -> (P,17) bool contact state of each pair (see the module docstring)."""
        probs = contacting.detach()
        not_contacting = nn.functional.one_hot(torch.full_like(probs[:, 0], NOT_CONTACTING, dtype=torch.long),
                                               NUM_CONTACTING).bool()
        above = probs >= self.config.pred_contact_threshold
        above[:, NOT_CONTACTING] = False
        states = torch.where((probs.argmax(1) == NOT_CONTACTING)[:, None], not_contacting, above)
        if self.training and self.config.pred_contact_threshold >= 1.0:
            states = torch.where(entry["has_gt"][:, None], entry["contacting_gt"] > 0.5, states)
        return states

    def forward(self, entry: dict) -> dict:
        cfg = self.config
        objects, entry = self.classify_objects(entry)
        out = {k: entry[k] for k in ("boxes", "labels", "scores", "im_idx", "pair_idx")}
        out.update(objects)
        if not len(entry["pair_idx"]):
            return empty_relations(out, entry["boxes"].device)
        labels = out["pred_labels"]
        im_idx = entry["im_idx"]
        classes = labels[entry["pair_idx"][:, 1]]
        # The reference ranks same-class boxes by their score only at SGCLS/SGDET evaluation (else all count as 1).
        use_scores = "human_candidate" in entry
        scores = out["pred_scores"][entry["pair_idx"][:, 1]] if use_scores else torch.ones(len(classes))
        now, previous, sequence, pad = (t.to(im_idx.device) for t in object_history(
            classes.tolist(), im_idx.tolist(), scores.tolist(), cfg.window_size))
        spatial_prior = None if self.spatial_prior is None else self.spatial_prior.initial_prior(classes)
        initial_prior = None if self.temporal_prior is None else self.temporal_prior.initial_prior(classes)

        x = self.pair_features(entry, labels)
        for _ in range(cfg.N_layer):
            encoded = self.encode(x, im_idx, spatial_prior)
            out.update(self.branch_heads["encoder"](encoded, "encoder_"))
            states = self.contact_states(out["encoder_contacting_distribution"], entry)
            state_prior = None
            if self.temporal_prior is not None:
                state_prior = self.temporal_prior.state_prior(classes, states[now])
            decoded = self.decode(encoded, im_idx, state_prior, initial_prior)
            out.update(self.branch_heads["decoder"](decoded, "decoder_"))
            x = encoded
        if spatial_prior is not None:
            out.update(self.branch_heads["encoder"](spatial_prior, "spatial_prior_"))
        if self.temporal_prior is not None:
            temporal_prior = self.temporal_prior.state_prior(classes, states[previous])
            out.update(self.branch_heads["decoder"](temporal_prior, "temporal_prior_"))

        y = ((encoded + decoded) / 2)[sequence]
        slots = self.slot_embedding.weight[:sequence.shape[1]].expand(len(y), -1, -1)
        for layer in self.ensemble:
            y = layer(y, pad, None, slots)
        rel_features = y[torch.arange(len(y), device=y.device), (~pad).sum(1) - 1]
        out.update(self.branch_heads["ensemble"](rel_features))
        out["rel_features"] = rel_features
        return out

    def loss_branches(self) -> list[str]:
        branches = ["encoder_", "decoder_", ""]
        if self.config.spatial_prior_loss:
            branches.append("spatial_prior_")
        if self.config.temporal_prior_loss:
            branches.append("temporal_prior_")
        return branches

    def compute_losses(self, pred: dict, entry: dict, bce: bool) -> dict[str, torch.Tensor]:
        """Attention CE and spatial/contacting margin (or BCE) losses of every branch and of the enabled prior-only
        predictions ("ensemble_*" is the final prediction's), plus the object CE in SGCLS/SGDET."""
        losses = {}
        for prefix in self.loss_branches():
            part = {f"{c}_distribution": pred[f"{prefix}{c}_distribution"] for c in CATEGORIES}
            if prefix == "" and "obj_logits" in pred:
                part["obj_logits"] = pred["obj_logits"]
            for name, value in relation_losses(part, entry, bce).items():
                losses[name if name == "object" else f"{prefix or 'ensemble_'}{name}"] = value
        return losses
