"""Fusion head: (original features, generated features[, category text features]) -> reward logit.

Input vector: ``concat(f_orig, f_gen, f_gen - f_orig, f_gen * f_orig)`` and, when the backbone
has a text encoder, ``concat(t, t * f_gen)`` (only if the text and image dims agree, as in BLIP's
shared projection space; otherwise just ``t``). A LayerNorm brings the L2-normalised features
(elements ~ 1/sqrt(dim)) to unit scale, then an MLP outputs one scalar ``r``. ``sigmoid(r)`` is the
reported score in [0, 1]: the model's estimate that the background is appropriate.

Artifacts: ``head.safetensors`` (weights) + ``config.json`` (head config, backbone spec and
name, threshold, metrics).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "config.json"
ARTIFACT_FORMAT = "stagecraft-reward-head/1"


@dataclass
class HeadConfig:
    image_dim: int
    text_dim: int = 0
    hidden: list[int] = field(default_factory=lambda: [256, 64])
    dropout: float = 0.1

    @property
    def uses_text_product(self) -> bool:
        return self.text_dim > 0 and self.text_dim == self.image_dim

    @property
    def input_dim(self) -> int:
        d = 4 * self.image_dim
        if self.text_dim:
            d += self.text_dim * (2 if self.uses_text_product else 1)
        return d


class RewardHead(nn.Module):
    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = [nn.LayerNorm(config.input_dim)]
        d = config.input_dim
        for h in config.hidden:
            layers += [nn.Linear(d, h), nn.GELU(), nn.Dropout(config.dropout)]
            d = h
        layers.append(nn.Linear(d, 1))
        self.mlp = nn.Sequential(*layers)

    def fuse(self, f_orig: torch.Tensor, f_gen: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        parts = [f_orig, f_gen, f_gen - f_orig, f_gen * f_orig]
        if self.config.text_dim:
            if text is None:
                raise ValueError("this head was trained with category text features; pass them")
            parts.append(text)
            if self.config.uses_text_product:
                parts.append(text * f_gen)
        return torch.cat(parts, dim=-1)

    def forward(self, f_orig: torch.Tensor, f_gen: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Reward logits, shape (N,)."""
        return self.mlp(self.fuse(f_orig, f_gen, text)).squeeze(-1)


def save_artifact(directory, head: RewardHead, backbone_spec: dict, extra: dict | None = None) -> Path:
    """Write head weights (safetensors) and config (JSON). Refuses non-finite weights."""
    from safetensors.torch import save_file

    for name, p in head.state_dict().items():
        if not torch.isfinite(p).all():
            raise ValueError(f"refusing to save a head with non-finite weights ({name})")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(d / HEAD_WEIGHTS), metadata={"format": ARTIFACT_FORMAT})
    cfg = {"format": ARTIFACT_FORMAT, "head": asdict(head.config), "backbone": backbone_spec}
    cfg.update(extra or {})
    (d / HEAD_CONFIG).write_text(json.dumps(json_safe(cfg), indent=2, sort_keys=True))
    return d


def load_artifact(directory) -> tuple[RewardHead, dict]:
    from safetensors.torch import load_file

    d = Path(directory)
    cfg = json.loads((d / HEAD_CONFIG).read_text())
    if cfg.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{d} is not a reward-head artifact (format {cfg.get('format')!r})")
    head = RewardHead(HeadConfig(**cfg["head"]))
    head.load_state_dict(load_file(str(d / HEAD_WEIGHTS)))
    head.eval()
    return head, cfg


def json_safe(obj):
    """Plain JSON values: NaN/inf become null, numpy and torch scalars become Python numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return json_safe(obj.item())
    return obj
