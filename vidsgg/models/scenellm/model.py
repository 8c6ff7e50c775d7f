"""SceneLLM (Zhang, Li, Liu; arXiv 2412.11026) on STTran's features: scene tokens from a VQ-VAE, one token per
frame from spatial aggregation, a causal LM with LoRA over the frame sequence, and STTran as the scene-graph
decoder with the LM's context fused into its relation features.

forward(entry) (vidsgg.data.entries, features filled in) -> STTran's prediction dict (sttran.py docstring) plus
frame_tokens (T, D), codes (N,) and, in the vqvae stage, the VQ-VAE loss terms. Pipeline:
    RoI features (N, C4) → VQ-VAE → quantized tokens (N, D), D = -latent_dim
    → SIA (box MLP + hierarchical clustering + GCN) → frame tokens (T, D)
    → causal LM + LoRA (project in/out) → GRU over frames → context (T, D) → Linear → (T, d)
    relation features r (P, d) of STTran's transformer; pair p of frame t takes c = context[t]:
    fused = α·r + (1−α)·σ(W[r; c]) ⊙ c with α = FUSION_ALPHA (0.5) → STTran's heads.
During training the optimal-transport step (ot.py) moves the codebook every -ot_step forwards, in every stage
(outside the vqvae stage no gradient reaches the codebook, but OT keeps it on the latent distribution).

Stages (-scenellm_stage): vqvae trains the VQ-VAE alone (loss = reconstruction + codebook + β·commitment; a
training forward stops after the VQ-VAE); stage1 trains SIA, the LM projections, the GRU, the fusion and STTran
(loss = α_rel·relations + α_obj·objects) with the VQ-VAE and the LM frozen; stage2 adds the LoRA adapters, at
-llm_lr, frozen for the first -freeze_llm_epochs epochs. The base LM weights never train; with -llm_name they are
left out of state_dict() (from_config reloads them from the folder).

Deviations from the paper (no official code): LLaMA-13B → a local -llm_name folder or a small random Llama;
the ConvGRU runs as a GRU on frame vectors; SIA's clustering is single-linkage on box centres; OT pools latents
in a ring memory; the decoder is STTran (as m3sgg) with the gated fusion; stage2 keeps training the stage-1
parts at -lr next to the adapters.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from vidsgg.models.losses import relation_losses
from vidsgg.models.scenellm.llm import SceneReasoner
from vidsgg.models.scenellm.ot import OTCodebookUpdate
from vidsgg.models.scenellm.sia import SceneAggregator
from vidsgg.models.scenellm.vqvae import VQVAE
from vidsgg.models.sttran import STTran, STTranConfig, empty_relations

FUSION_ALPHA = 0.5
STAGES = ("vqvae", "stage1", "stage2")


@dataclass
class SceneLLMConfig(STTranConfig):
    stage: str = "vqvae"            # -scenellm_stage
    latent_dim: int = 512           # VQ-VAE latent and scene-token width (paper 512; m3sgg 1024)
    codebook_size: int = 512        # paper 512; m3sgg 8192
    commitment_cost: float = 0.25   # β (m3sgg 0.25; the paper's λ 0.02)
    llm_name: str | None = None     # local folder; None = small random Llama
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    ot_step: int = 512              # training forwards between codebook OT updates
    alpha_obj: float = 1.0          # weight of the object loss (sgcls/sgdet)
    alpha_rel: float = 1.0          # weight of the attention/spatial/contacting losses
    llm_lr: float = 2e-5            # stage2: learning rate of the LoRA adapters
    freeze_llm_epochs: int = 0      # stage2: adapters frozen for the first N epochs

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"-scenellm_stage must be one of {STAGES}, got {self.stage!r}")
        checks = {"latent_dim": self.latent_dim >= 1, "codebook_size": self.codebook_size >= 1,
                  "commitment_cost": self.commitment_cost >= 0, "lora_r": self.lora_r >= 1,
                  "lora_alpha": self.lora_alpha > 0, "lora_dropout": 0 <= self.lora_dropout < 1,
                  "ot_step": self.ot_step >= 1, "alpha_obj": self.alpha_obj >= 0, "alpha_rel": self.alpha_rel >= 0,
                  "llm_lr": self.llm_lr > 0, "freeze_llm_epochs": self.freeze_llm_epochs >= 0}
        bad = [f"-{k} {getattr(self, k)}" for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"SceneLLM: invalid {', '.join(bad)} (latent_dim, codebook_size, lora_r, ot_step ≥ 1; "
                             "lora_alpha, llm_lr > 0; 0 ≤ lora_dropout < 1; the rest ≥ 0)")


class SceneLLM(STTran):
    def __init__(self, config: SceneLLMConfig, word_table: torch.Tensor | None = None):
        super().__init__(config, word_table)
        d, latent = config.dim, config.latent_dim
        self.vqvae = VQVAE(config.feature_dim, latent, config.codebook_size)
        self.ot = OTCodebookUpdate(config.codebook_size, latent, config.ot_step)
        self.aggregator = SceneAggregator(latent)
        self.reasoner = SceneReasoner(latent, config.llm_name, config.lora_r, config.lora_alpha, config.lora_dropout)
        self.temporal_gru = nn.GRU(latent, latent, batch_first=True)  # the paper's 1-layer ConvGRU, on vectors
        self.context_proj = nn.Linear(latent, d)
        self.gate = nn.Linear(2 * d, d)
        self._base_lm_keys = set(self.reasoner.base_state_names("reasoner.llm."))
        if config.llm_name is not None:
            self.register_state_dict_post_hook(_drop_base_lm)
        main, adapters = self.stage_parameters()
        trained = {id(p) for p in main + adapters}
        for param in self.parameters():  # the base LM never trains; start_epoch may freeze the adapters again
            param.requires_grad_(id(param) in trained)

    # ------------------------------------------------------------------ what trains
    def stage_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(parameters trained at -lr, LoRA adapters trained at -llm_lr) of the configured stage."""
        vq = list(self.vqvae.parameters())
        if self.config.stage == "vqvae":
            return vq, []
        adapters = self.reasoner.adapter_parameters()
        frozen = {id(p) for p in vq + adapters + list(self.reasoner.llm.parameters())}
        rest = [p for p in self.parameters() if id(p) not in frozen]
        return rest, adapters if self.config.stage == "stage2" else []

    def parameter_groups(self, lr: float) -> list[dict]:
        """AdamW groups: the stage's parameters at `lr`; in stage2 also the adapters at llm_lr (always listed,
        so the optimizer state covers them while -freeze_llm_epochs keeps them without gradients)."""
        main, adapters = self.stage_parameters()
        groups = [{"params": main, "lr": lr}]
        if adapters:
            groups.append({"params": adapters, "lr": self.config.llm_lr})
        return groups

    def start_epoch(self, epoch: int) -> None:
        """Stage2: the LoRA adapters train from epoch -freeze_llm_epochs on (0-based epochs)."""
        if self.config.stage == "stage2":
            for param in self.reasoner.adapter_parameters():
                param.requires_grad_(epoch >= self.config.freeze_llm_epochs)

    # ------------------------------------------------------------------ forward, losses
    def forward(self, entry: dict) -> dict:
        out = {k: entry[k] for k in ("boxes", "labels", "scores", "im_idx", "pair_idx")}
        vqvae_stage = self.config.stage == "vqvae"
        vq = self.vqvae(entry["features"], reconstruct=vqvae_stage)
        if self.training:
            self.ot.step(self.vqvae.codebook, vq["latent"])
        out["codes"] = vq["codes"]
        if vqvae_stage:
            out.update({k: vq[k] for k in ("reconstruction", "codebook", "commitment")})
            if self.training:  # nothing downstream trains in this stage
                return out
        objects, entry = self.classify_objects(entry)
        out.update({k: entry[k] for k in ("im_idx", "pair_idx")}, **objects)
        if not len(entry["pair_idx"]):
            return empty_relations(out, entry["boxes"].device)
        _, rel = self.transformer(self.pair_features(entry, out["pred_labels"]), entry["im_idx"])
        tokens = self.aggregator(vq["quantized"], entry["boxes"], entry["image_size"])  # (T, D)
        context, _ = self.temporal_gru(self.reasoner(tokens)[None])
        context = self.context_proj(context[0])[entry["im_idx"]]                        # (P, d)
        gate = torch.sigmoid(self.gate(torch.cat([rel, context], dim=1)))
        fused = FUSION_ALPHA * rel + (1 - FUSION_ALPHA) * gate * context
        out.update(self.heads(fused))
        out["rel_features"], out["frame_tokens"] = fused, tokens
        return out

    def compute_losses(self, pred: dict, entry: dict, bce: bool) -> dict[str, torch.Tensor]:
        """vqvae stage: reconstruction, codebook, β·commitment. Otherwise STTran's losses weighted by
        alpha_rel (attention, spatial, contacting) and alpha_obj (object)."""
        cfg = self.config
        if cfg.stage == "vqvae":
            return {"reconstruction": pred["reconstruction"], "codebook": pred["codebook"],
                    "commitment": cfg.commitment_cost * pred["commitment"]}
        losses = relation_losses(pred, entry, bce)
        return {k: (cfg.alpha_obj if k == "object" else cfg.alpha_rel) * v for k, v in losses.items()}

    # ------------------------------------------------------------------ config, checkpoints
    @classmethod
    def from_config(cls, config: dict) -> "SceneLLM":
        known = {f.name for f in fields(SceneLLMConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"SceneLLM config has unknown keys {unknown}")
        return cls(SceneLLMConfig(**config))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's; the base LM tensors that state_dict() leaves out (-llm_name) keep their loaded
        values instead of counting as missing."""
        if self.config.llm_name is not None:
            base = {k: v for k, v in self.reasoner.llm.state_dict(prefix="reasoner.llm.").items()
                    if k in self._base_lm_keys}
            state_dict = {**base, **state_dict}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _drop_base_lm(module: SceneLLM, state_dict: dict, prefix: str, local_metadata) -> None:
    """state_dict post-hook: the frozen base LM of -llm_name is not saved (it is reloaded from its folder)."""
    for key in [k for k in state_dict if k.startswith(prefix) and k[len(prefix):] in module._base_lm_keys]:
        del state_dict[key]
