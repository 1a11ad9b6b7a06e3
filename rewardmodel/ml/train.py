"""Training the fusion head on cached backbone features."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from .cache import text_key
from .data import (
    MIN_LABELS,
    Example,
    NotEnoughLabels,
    PairwiseLabel,
    SingleLabel,
    TrainingDiverged,
    category_prompt,
    check_enough_labels,
)
from .head import HeadConfig, RewardHead
from .losses import OUTCOME_CODES, pair_losses, single_losses, weighted_total

ProgressCallback = Callable[[int, int, str], None]


@dataclass
class TrainConfig:
    hidden: list[int] = field(default_factory=lambda: [256, 64])
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 60
    patience: int = 8  # epochs without validation-loss improvement before stopping
    min_labels: int = MIN_LABELS
    seed: int = 0
    tie_weight: float = 1.0
    both_bad_weight: float = 1.0
    single_weight: float = 1.0
    grad_clip: float | None = 5.0
    num_threads: int | None = None  # torch threads while training (None: leave as is)


@dataclass
class TrainResult:
    head: RewardHead
    config: TrainConfig
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict]
    seconds: float

    def summary(self) -> dict:
        return {
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "seconds": round(self.seconds, 3),
            "train_config": asdict(self.config),
            "history": self.history,
        }


class _Packed:
    """Examples as index tensors into one feature matrix."""

    def __init__(self, examples: Sequence[Example], features: Mapping[str, np.ndarray], text_dim: int):
        keys: dict[str, int] = {}
        texts: dict[str, int] = {}

        def kid(k: str) -> int:
            if k not in keys:
                if k not in features:
                    raise KeyError(f"no feature for image {k!r}: compute features for every image in the examples")
                keys[k] = len(keys)
            return keys[k]

        def tid(cat: str) -> int:
            if not text_dim:
                return 0
            tk = text_key(category_prompt(cat))
            if tk not in texts:
                if tk not in features:
                    raise KeyError(f"no text feature for category {cat!r}")
                texts[tk] = len(texts)
            return texts[tk]

        p, s = [], []
        for ex in examples:
            if isinstance(ex, PairwiseLabel):
                p.append((kid(ex.original), kid(ex.image_a), kid(ex.image_b), OUTCOME_CODES[ex.outcome.value], ex.weight, tid(ex.category)))
            elif isinstance(ex, SingleLabel):
                s.append((kid(ex.original), kid(ex.generated), int(bool(ex.appropriate)), ex.weight, tid(ex.category)))
            else:
                raise TypeError(f"not a label: {ex!r}")
        mat = np.stack([np.asarray(features[k], dtype=np.float32) for k in keys]) if keys else np.zeros((0, 1), np.float32)
        if not np.isfinite(mat).all():
            bad = [k for k, i in keys.items() if not np.isfinite(mat[i]).all()]
            raise ValueError(f"features of {len(bad)} image(s) are NaN/inf (first: {bad[0]}); recompute them")
        self.F = torch.from_numpy(mat)
        self.T = (
            torch.from_numpy(np.stack([np.asarray(features[k], dtype=np.float32) for k in texts]))
            if text_dim and texts
            else None
        )
        pa = np.array(p, dtype=np.float64).reshape(-1, 6)
        sa = np.array(s, dtype=np.float64).reshape(-1, 5)
        self.p_o, self.p_a, self.p_b = (torch.from_numpy(pa[:, i].astype(np.int64)) for i in range(3))
        self.p_out = torch.from_numpy(pa[:, 3].astype(np.int64))
        self.p_w = torch.from_numpy(pa[:, 4].astype(np.float32))
        self.p_t = torch.from_numpy(pa[:, 5].astype(np.int64))
        self.s_o, self.s_g = (torch.from_numpy(sa[:, i].astype(np.int64)) for i in range(2))
        self.s_y = torch.from_numpy(sa[:, 2].astype(np.float32))
        self.s_w = torch.from_numpy(sa[:, 3].astype(np.float32))
        self.s_t = torch.from_numpy(sa[:, 4].astype(np.int64))
        if (self.p_w < 0).any() or (self.s_w < 0).any():
            raise ValueError("label weights must be >= 0")
        self.n_pairs, self.n_single = len(pa), len(sa)

    def _text(self, idx):
        return None if self.T is None else self.T[idx]

    def loss(self, head: RewardHead, cfg: TrainConfig, pi=None, si=None) -> torch.Tensor:
        pi = slice(None) if pi is None else pi
        si = slice(None) if si is None else si
        po, pa, pb, pt = self.p_o[pi], self.p_a[pi], self.p_b[pi], self.p_t[pi]
        so, sg, st = self.s_o[si], self.s_g[si], self.s_t[si]
        # One forward pass over all scored images of the batch.
        orig = torch.cat([po, po, so])
        gen = torch.cat([pa, pb, sg])
        txt = self._text(torch.cat([pt, pt, st]))
        r = head(self.F[orig], self.F[gen], txt)
        n = len(po)
        r_a, r_b, r_s = r[:n], r[n : 2 * n], r[2 * n :]
        pl = pair_losses(r_a, r_b, self.p_out[pi], cfg.tie_weight, cfg.both_bad_weight)
        sl = single_losses(r_s, self.s_y[si], cfg.single_weight)
        return weighted_total(pl, self.p_w[pi], sl, self.s_w[si])


def train_reward_head(
    train_examples: Sequence[Example],
    val_examples: Sequence[Example],
    config: TrainConfig | None = None,
    progress_callback: ProgressCallback | None = None,
    *,
    features: Mapping[str, np.ndarray],
) -> TrainResult:
    """Train a fresh fusion head; early stopping on the weighted validation loss.

    ``features`` maps every image key (and ``text_key(category_prompt(c))`` for text backbones)
    to its backbone feature (``FeatureCache`` / ``features_for_examples``).
    ``progress_callback(epoch, max_epochs, message)`` is called after every epoch.
    Raises ``NotEnoughLabels`` (before any work) and ``TrainingDiverged`` (NaN/inf loss; nothing
    is returned). The returned head holds the weights of the best validation epoch.
    """
    cfg = config or TrainConfig()
    check_enough_labels(list(train_examples) + list(val_examples), cfg.min_labels)
    if not train_examples:
        raise NotEnoughLabels("no training labels after the split")
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        some_key = next(k for k in features if not k.startswith("text-"))
        image_dim = int(np.asarray(features[some_key]).shape[-1])
        text_dims = [np.asarray(v).shape[-1] for k, v in features.items() if k.startswith("text-")]
        text_dim = int(text_dims[0]) if text_dims else 0
        train = _Packed(train_examples, features, text_dim)
        val = _Packed(val_examples, features, text_dim) if val_examples else None

        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        head = RewardHead(HeadConfig(image_dim=image_dim, text_dim=text_dim, hidden=list(cfg.hidden), dropout=cfg.dropout))
        opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_total = train.n_pairs + train.n_single
        n_batches = max(1, math.ceil(n_total / cfg.batch_size))
        best_loss, best_state, best_epoch, bad_epochs = math.inf, None, 0, 0
        history: list[dict] = []
        stopped_early = False
        epoch = 0
        for epoch in range(1, cfg.max_epochs + 1):
            head.train()
            p_chunks = np.array_split(rng.permutation(train.n_pairs), n_batches)
            s_chunks = np.array_split(rng.permutation(train.n_single), n_batches)
            losses = []
            for step, (pi, si) in enumerate(zip(p_chunks, s_chunks)):
                if len(pi) + len(si) == 0:
                    continue
                loss = train.loss(head, cfg, torch.from_numpy(pi), torch.from_numpy(si))
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"training diverged: loss is {loss.item()} at epoch {epoch}, step {step + 1}; "
                        f"no model was produced. Lower the learning rate (now {cfg.lr}) or check the labels/features."
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
                try:
                    opt.step()
                except RuntimeError as exc:  # e.g. "value cannot be converted to type float without overflow"
                    if "overflow" not in str(exc):
                        raise
                    raise TrainingDiverged(
                        f"training diverged: the optimizer overflowed at epoch {epoch}, step {step + 1}; no model "
                        f"was produced. Lower the learning rate (now {cfg.lr})."
                    ) from exc
                losses.append(loss.item())
            train_loss = float(np.mean(losses)) if losses else float("nan")
            head.eval()
            with torch.no_grad():
                if val is not None:
                    val_loss = val.loss(head, cfg).item()
                else:
                    val_loss = train.loss(head, cfg).item()
            if not math.isfinite(val_loss) or any(not torch.isfinite(p).all() for p in head.parameters()):
                raise TrainingDiverged(
                    f"training diverged: validation loss is {val_loss} at epoch {epoch}; no model was produced. "
                    f"Lower the learning rate (now {cfg.lr})."
                )
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            if val_loss < best_loss - 1e-5:
                best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
                best_state = copy.deepcopy(head.state_dict())
            else:
                bad_epochs += 1
            if progress_callback is not None:
                progress_callback(epoch, cfg.max_epochs, f"epoch {epoch}: train loss {train_loss:.4f}, "
                                  f"{'val' if val is not None else 'train (no val)'} loss {val_loss:.4f}")
            if bad_epochs >= cfg.patience:
                stopped_early = True
                break
        head.load_state_dict(best_state)
        head.eval()
        return TrainResult(head, cfg, best_epoch, epoch, stopped_early, history, time.perf_counter() - t0)
    finally:
        if cfg.num_threads:
            torch.set_num_threads(old_threads)
