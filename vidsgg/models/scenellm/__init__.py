"""SceneLLM: VQ-VAE scene tokens, spatial aggregation to one token per frame, an optimal-transport codebook
update, a causal LM with LoRA over the frames, and STTran as the scene-graph decoder (see model.py)."""
from vidsgg.models.scenellm.model import SceneLLM, SceneLLMConfig

__all__ = ["SceneLLM", "SceneLLMConfig"]
