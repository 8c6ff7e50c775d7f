"""LAQ model: transformer pieces (attention.py), the NSVQ quantiser (nsvq.py) and the full model (laq.py)."""
from laq.models.laq import LAQConfig, LatentActionQuantization, build_model

__all__ = ["LAQConfig", "LatentActionQuantization", "build_model"]
