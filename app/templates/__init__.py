"""Online log-pattern mining: masking of variables and a per-tenant template miner."""

from __future__ import annotations

from app.templates.masking import DEFAULT_MASKING, MaskingConfig, mask
from app.templates.miner import Cluster, Match, MinerConfig, TenantMiner, template_id
from app.templates.tokens import WILDCARD

__all__ = [
    "DEFAULT_MASKING",
    "WILDCARD",
    "Cluster",
    "Match",
    "MaskingConfig",
    "MinerConfig",
    "TenantMiner",
    "mask",
    "template_id",
]
