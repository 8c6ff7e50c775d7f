"""The language model that reasons over the frame tokens: a causal LM (frozen) with LoRA adapters (peft).

`-llm_name DIR`: a local folder in transformers format (config.json + weights); loaded with
local_files_only=True, never from the hub. Without it, a small randomly initialised Llama built from a config
(DEFAULT_LAYERS layers, width = -latent_dim, FFN 4×, tied embeddings, vocabulary of 32: the LM reads
embeddings, never token ids). On the meta device (summary.py) only the folder's config.json is read.
LoRA (r, α, dropout) goes into the attention projections peft lists for the model type (Llama: q_proj, v_proj),
else into every linear layer. The base weights never train; the adapters' requires_grad is set by the model.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

DEFAULT_LAYERS = 4
LORA_MARK = "lora_"  # every adapter tensor's name contains it


def _default_config(width: int):
    from transformers import LlamaConfig
    heads = next(h for h in (8, 4, 2, 1) if width % h == 0 and (width // h) % 2 == 0)
    return LlamaConfig(vocab_size=32, hidden_size=width, intermediate_size=4 * width,
                       num_hidden_layers=DEFAULT_LAYERS, num_attention_heads=heads, num_key_value_heads=heads,
                       max_position_embeddings=4096, tie_word_embeddings=True)


def load_causal_lm(llm_name: str | None, width: int) -> nn.Module:
    """The causal LM of -llm_name (a local folder), or the small default one of `width` (see the module doc)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    if llm_name is None:
        config = _default_config(width)
        log.warning("SceneLLM: no -llm_name given; using a small randomly initialised causal LM (Llama, %d layers, "
                 "hidden %d) built from a config.", DEFAULT_LAYERS, width)
        return AutoModelForCausalLM.from_config(config)
    folder = Path(llm_name)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"-llm_name {llm_name}: expected a local folder with a causal LM in transformers "
                                f"format (config.json + weights); {folder / 'config.json'} does not exist. "
                                "Hub names are not downloaded: save the model with save_pretrained first.")
    if torch.empty(()).device.type == "meta":  # summary.py: the architecture only, no weights read
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder, local_files_only=True))
    log.info("SceneLLM: causal LM loaded from %s", folder)
    return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype="auto")


def add_lora(model: nn.Module, rank: int, alpha: float, dropout: float) -> nn.Module:
    """Inject LoRA adapters into `model` (in place); every non-adapter parameter is frozen."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS
    targets = TARGETS.get(getattr(model.config, "model_type", ""), "all-linear")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    model = inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad_(LORA_MARK in name)
    return model


class SceneReasoner(nn.Module):
    """Frame tokens (T, D) -> the LM's last hidden states projected back to (T, D); causal over frames."""

    def __init__(self, latent_dim: int, llm_name: str | None, lora_r: int, lora_alpha: float, lora_dropout: float):
        super().__init__()
        self.llm = add_lora(load_causal_lm(llm_name, latent_dim), lora_r, lora_alpha, lora_dropout)
        width = self.llm.config.hidden_size
        self.project_in = nn.Linear(latent_dim, width)
        self.project_out = nn.Linear(width, latent_dim)

    def adapter_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.llm.named_parameters() if LORA_MARK in n]

    def base_state_names(self, prefix: str) -> list[str]:
        """State-dict keys (with `prefix`) of the frozen base LM, i.e. everything of it but the adapters."""
        return [prefix + k for k in self.llm.state_dict() if LORA_MARK not in k]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        dtype = next(self.llm.parameters()).dtype
        embeds = self.project_in(tokens).to(dtype)[None]
        hidden = self.llm.get_decoder()(inputs_embeds=embeds).last_hidden_state[0]
        return self.project_out(hidden.to(tokens.dtype))
