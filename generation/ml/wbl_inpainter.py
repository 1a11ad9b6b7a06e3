"""EdgeConnect-style, boundary-aware learned inpainter trained with a weighted boundary loss (WBL).

Two small convolutional generators, as in EdgeConnect (Nazeri et al., 2019):

1. the **edge generator** predicts the edge map inside the hole from the masked grey image, the
   masked Canny edges and the mask;
2. the **image generator** fills the hole from the masked RGB image, the completed edge map
   (known edges outside the hole, predicted edges inside) and the mask. By default
   (``prefill="telea"``) its RGB input has the hole pre-filled by OpenCV Telea and it predicts a
   zero-initialised correction (output = prefill + correction), so even a briefly trained model
   starts from the classical fill; ``prefill="none"`` is EdgeConnect's plain formulation
   (white-filled hole, sigmoid output).

Loss (the seed's weighted boundary loss): ``L_WBL = mean(W_mask * |E_gt - E_pred|)`` over the
hole, where ``W_mask = 1 + boundary_alpha * exp(-(d - 1) / boundary_tau)`` and ``d`` is the
distance (px) of a hole pixel to the nearest known pixel, so weights grow toward the boundary of
the hole, where a copy-paste gap meets the product and the background. The image output gets the
same weighted L1. (EdgeConnect's adversarial and perceptual terms are not used: see
docs/generation-learned.md.)

Self-supervised training data: silhouette-gap masks cut from catalog/staged photos. For a photo
with product mask ``M``, an "old" silhouette is made by scaling/shifting/dilating ``M`` and the
hole is ``old & ~M``: the ring copy-paste leaves when a product replaces a slightly different one.
With probability ``protect_prob`` the product itself is also hidden from the network (as it is at
inference when a ``protect_mask`` is passed), so it learns to continue the background, not the
product.

Public API (no Django):

    artifact_dir = train_wbl_inpainter(images, masks, config=WblConfig(...),
                                       progress_callback=cb, device=None)
    inpainter = WblInpainter.load(artifact_dir)       # or the parent folder: newest version
    out = inpainter.inpaint(rgb, hole_mask, protect_mask=None)   # the `Inpainter` protocol

``cb(step, total_steps, metrics)`` is called every ``config.log_every`` steps and at the end.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .diffusion_utils import find_versioned_artifact, resolve_device, save_versioned_artifact

FORMAT = "stagecraft-wbl-inpainter"
FORMAT_VERSION = 1
WEIGHTS_FILE = "wbl_inpainter.safetensors"
CONFIG_FILE = "config.json"
WBL_ENV = "STAGECRAFT_WBL_INPAINTER"  # optional: artifact folder (or its parent) of a trained model

TrainProgress = Callable[[int, int, dict], None]


@dataclass
class WblConfig:
    steps: int = 2000
    batch_size: int = 8
    crop: int = 128  # training crop (px), centred on a hole pixel
    max_side: int = 256  # photos are resized so the longer side is this before cropping
    lr: float = 1e-3
    lr_final: float = 0.05  # cosine decay to this fraction of lr by the last step (1.0: constant)
    width: int = 32  # channels of the first conv; the bottleneck has 4x
    n_res: int = 4  # dilated residual blocks at the bottleneck
    boundary_alpha: float = 4.0  # extra weight at the hole boundary (W = 1 + alpha at d = 1 px)
    boundary_tau: float = 3.0  # decay length (px) of the extra weight
    image_weight: float = 1.0  # weight of the image generator's weighted L1 vs the edge WBL
    scale_range: tuple[float, float] = (1.0, 1.25)  # "old" silhouette scale vs the product
    shift_px: int = 6  # "old" silhouette random shift (px at max_side)
    dilate_range: tuple[int, int] = (1, 8)  # extra dilation (px) of the old silhouette
    protect_prob: float = 0.5  # hide the product from the input too (as with protect_mask)
    gt_edge_prob: float = 0.5  # feed ground-truth edges to the image generator (else predicted)
    prefill: str = "telea"  # "telea": the image generator refines a cv2 Telea fill (residual); "none": white fill
    canny_low: int = 50
    canny_high: int = 150
    canny_blur: float = 1.0
    infer_max_side: int = 512  # crops around the hole larger than this are processed downscaled
    infer_margin: int = 32  # context (px) kept around the hole at inference
    seed: int = 0
    log_every: int = 10
    output_dir: str = "var/models/wbl_inpainter"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "WblConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**kw)


# --- networks ------------------------------------------------------------------------------------

class _ResBlock(nn.Module):
    def __init__(self, ch: int, dilation: int = 2):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(dilation), nn.Conv2d(ch, ch, 3, dilation=dilation), nn.InstanceNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch),
        )

    def forward(self, x):
        return x + self.body(x)


class Generator(nn.Module):
    """EdgeConnect's generator shape, narrower: 7x7 conv, two stride-2 downs, dilated residual
    blocks, two stride-2 ups, 7x7 conv. Output: sigmoid in [0, 1], or (``residual=True``) a
    zero-initialised correction in [-0.5, 0.5]. Input H, W must be multiples of 4."""

    def __init__(self, in_ch: int, out_ch: int, width: int = 32, n_res: int = 4, residual: bool = False):
        super().__init__()
        w = width
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_ch, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.InstanceNorm2d(2 * w), nn.ReLU(True),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.InstanceNorm2d(4 * w), nn.ReLU(True),
        ]
        layers += [_ResBlock(4 * w) for _ in range(n_res)]
        layers += [
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.InstanceNorm2d(2 * w), nn.ReLU(True),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.InstanceNorm2d(w), nn.ReLU(True),
            nn.ReflectionPad2d(3), nn.Conv2d(w, out_ch, 7),
        ]
        self.net = nn.Sequential(*layers)
        self.residual = residual
        if residual:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)

    def forward(self, x):
        y = self.net(x)
        return 0.5 * torch.tanh(y) if self.residual else torch.sigmoid(y)


class WblNetworks(nn.Module):
    """Edge generator + image generator. With ``residual=True`` the image generator refines a
    classical prefill of the hole (``config.prefill="telea"``): output = prefill + correction,
    so an untrained model equals the classical fill and training can only learn to improve it."""

    def __init__(self, width: int = 32, n_res: int = 4, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.edge = Generator(3, 1, width, n_res)  # grey_masked, edges_masked, mask
        self.image = Generator(5, 3, width, n_res, residual=residual)  # rgb_input (3), edges_completed, mask

    def predict_edges(self, grey, edges, mask):
        known = 1.0 - mask
        e = self.edge(torch.cat([grey * known + mask, edges * known, mask], 1))
        return e

    def fill(self, rgb, edges_full, mask, prefill=None):
        if self.residual:
            if prefill is None:
                raise ValueError("this model refines a prefill: pass prefill (rgb with the hole pre-filled)")
            return (prefill + self.image(torch.cat([prefill, edges_full, mask], 1))).clamp(0.0, 1.0)
        known = 1.0 - mask
        return self.image(torch.cat([rgb * known + mask, edges_full, mask], 1))

    def forward(self, rgb, grey, edges, mask, prefill=None):
        e_pred = self.predict_edges(grey, edges, mask)
        e_full = edges * (1.0 - mask) + e_pred * mask
        return e_pred, self.fill(rgb, e_full, mask, prefill)


def classical_prefill(rgb: np.ndarray, unknown: np.ndarray, method: str) -> np.ndarray | None:
    """uint8 RGB with `unknown` filled by cv2 Telea (no unknown pixel is used as a source)."""
    if method == "none":
        return None
    if method != "telea":
        raise ValueError(f"unknown prefill {method!r}; use 'telea' or 'none'")
    return cv2.inpaint(np.ascontiguousarray(rgb), unknown.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)


# --- masks, edges, weights -----------------------------------------------------------------------

def canny_edges(rgb: np.ndarray, cfg: WblConfig) -> np.ndarray:
    """Canny edge map (float32 0/1) of an RGB uint8 image."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if cfg.canny_blur > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), cfg.canny_blur)
    return (cv2.Canny(grey, cfg.canny_low, cfg.canny_high) > 0).astype(np.float32)


def known_edges(rgb: np.ndarray, unknown: np.ndarray, cfg: WblConfig) -> tuple[np.ndarray, np.ndarray]:
    """(Telea-filled image, Canny edges of the known pixels). The edges are taken on the filled
    image so that whatever the hole holds (zeros, the old product) leaves no edge along its
    boundary; training computes them the same way, so the network never sees such edges."""
    filled = classical_prefill(rgb, unknown, "telea")
    return filled, canny_edges(filled, cfg) * ~unknown


def boundary_weights(hole: np.ndarray, alpha: float = 4.0, tau: float = 3.0) -> np.ndarray:
    """W_mask: 0 outside the hole, 1 + alpha * exp(-(d - 1) / tau) inside, d = distance (px) to
    the nearest known pixel (1 at the hole's boundary), so weights grow toward the boundary."""
    hole_u8 = (np.asarray(hole) > 0).astype(np.uint8)
    if not hole_u8.any():
        return np.zeros(hole_u8.shape, np.float32)
    d = cv2.distanceTransform(hole_u8, cv2.DIST_L2, 3)
    w = 1.0 + alpha * np.exp(-(np.maximum(d, 1.0) - 1.0) / max(tau, 1e-6))
    return (w * hole_u8).astype(np.float32)


def weighted_boundary_loss(target: torch.Tensor, pred: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L_WBL = sum(W * |target - pred|) / sum(W) (per-channel mean of the L1 for multi-channel)."""
    l1 = (target - pred).abs().mean(1, keepdim=True)
    return (weights * l1).sum() / weights.sum().clamp_min(1e-6)


def silhouette_gap_mask(product_mask: np.ndarray, rng: np.random.Generator, cfg: WblConfig) -> np.ndarray:
    """The ring a copy-paste leaves: an 'old' silhouette (the product mask scaled, shifted and
    dilated at random) minus the product mask."""
    m = (np.asarray(product_mask) > 0.5).astype(np.uint8)
    h, w = m.shape
    ys, xs = np.nonzero(m)
    cy, cx = (ys.mean(), xs.mean()) if len(ys) else (h / 2, w / 2)
    s = rng.uniform(*cfg.scale_range)
    tx, ty = rng.integers(-cfg.shift_px, cfg.shift_px + 1, size=2)
    mat = np.array([[s, 0, (1 - s) * cx + tx], [0, s, (1 - s) * cy + ty]], np.float32)
    old = cv2.warpAffine(m, mat, (w, h), flags=cv2.INTER_NEAREST)
    k = int(rng.integers(cfg.dilate_range[0], cfg.dilate_range[1] + 1))
    if k > 0:
        old = cv2.dilate(old, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    hole = (old > 0) & (m == 0)
    if hole.sum() < 20:
        hole = (cv2.dilate(m, np.ones((9, 9), np.uint8)) > 0) & (m == 0)
    return hole


# --- data ----------------------------------------------------------------------------------------

def _load_rgb(item: Any) -> np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        from core.ml.images import load_rgb

        return load_rgb(Path(item))
    arr = np.asarray(item)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"training image must be HxWx3, got {arr.shape}")
    return np.ascontiguousarray(arr[:, :, :3].astype(np.uint8))


def _product_mask(rgb: np.ndarray, mask: Any) -> np.ndarray:
    if mask is None:
        from core.ml.segmentation import segment_product

        return segment_product(rgb).mask
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[:, :, 0]
    if m.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {m.shape} does not match image {rgb.shape[:2]}")
    return m > (0.5 if m.dtype.kind == "f" else 0) if m.dtype != bool else m


def prepare_examples(images: Sequence[Any], masks: Sequence[Any] | None, cfg: WblConfig):
    """Resize photos (longer side = max_side, shorter side >= crop) with their product masks."""
    if len(images) == 0:
        raise ValueError("no training images")
    if masks is not None and len(masks) != len(images):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    out = []
    for i, item in enumerate(images):
        rgb = _load_rgb(item)
        m = _product_mask(rgb, None if masks is None else masks[i])
        h, w = rgb.shape[:2]
        scale = cfg.max_side / max(h, w)
        scale = max(scale, cfg.crop / min(h, w))
        nh, nw = max(cfg.crop, round(h * scale)), max(cfg.crop, round(w * scale))
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        m = cv2.resize(m.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
        if m.sum() < 16 or (~m).sum() < 16:
            continue  # no usable product / background split
        out.append((rgb, m, canny_edges(rgb, cfg)))
    if not out:
        raise ValueError("none of the training images has a usable product mask")
    return out


def sample_batch(examples, rng: np.random.Generator, cfg: WblConfig, batch_size: int):
    """(rgb, grey, edges, input edges, input_mask, loss_weights, prefill or None) tensors,
    N x C x crop x crop, values in [0, 1]; ``edges`` are the true image's (the edge target), the
    input edges those `known_edges` gives at inference."""
    c = cfg.crop
    rgbs, edges, edges_in, masks, weights, prefills = [], [], [], [], [], []
    for _ in range(batch_size):
        rgb, pm, e = examples[int(rng.integers(len(examples)))]
        hole = silhouette_gap_mask(pm, rng, cfg)
        ys, xs = np.nonzero(hole)
        j = int(rng.integers(len(ys)))
        h, w = pm.shape
        y0 = int(np.clip(ys[j] - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, h - c))
        x0 = int(np.clip(xs[j] - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, w - c))
        sl = (slice(y0, y0 + c), slice(x0, x0 + c))
        hole_c = hole[sl]
        unknown = hole_c | pm[sl] if rng.random() < cfg.protect_prob else hole_c
        r, ed = rgb[sl], e[sl]
        if rng.random() < 0.5:
            r, ed, hole_c, unknown = r[:, ::-1], ed[:, ::-1], hole_c[:, ::-1], unknown[:, ::-1]
        rgbs.append(np.ascontiguousarray(r))
        edges.append(np.ascontiguousarray(ed))
        masks.append(np.ascontiguousarray(unknown))
        weights.append(boundary_weights(hole_c, cfg.boundary_alpha, cfg.boundary_tau))
        filled, e_in = known_edges(rgbs[-1], masks[-1], cfg)
        edges_in.append(e_in)
        if cfg.prefill != "none":
            prefills.append(filled)
    rgb_t = torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2).float() / 255.0
    grey_t = (0.299 * rgb_t[:, 0:1] + 0.587 * rgb_t[:, 1:2] + 0.114 * rgb_t[:, 2:3])
    edge_t = torch.from_numpy(np.stack(edges))[:, None].float()
    edge_in_t = torch.from_numpy(np.stack(edges_in))[:, None].float()
    mask_t = torch.from_numpy(np.stack(masks))[:, None].float()
    w_t = torch.from_numpy(np.stack(weights))[:, None].float()
    pre_t = torch.from_numpy(np.stack(prefills)).permute(0, 3, 1, 2).float() / 255.0 if prefills else None
    return rgb_t, grey_t, edge_t, edge_in_t, mask_t, w_t, pre_t


# --- training ------------------------------------------------------------------------------------

def train_wbl_inpainter(
    image_paths_or_arrays: Sequence[Any],
    masks: Sequence[Any] | None = None,
    config: WblConfig | dict | None = None,
    progress_callback: TrainProgress | None = None,
    device: str | None = None,
    *,
    init_from: str | os.PathLike | None = None,
) -> Path:
    """Train the edge and image generators on silhouette-gap holes; return the artifact folder.

    ``masks[i]`` is the product mask (HxW bool/float) of image i, or None to segment it with
    ``core.ml.segmentation.segment_product``; ``masks=None`` segments all. ``device`` None = cuda
    when available. ``init_from`` continues from a saved artifact. The artifact is written to
    ``config.output_dir/<version>/`` (``wbl_inpainter.safetensors`` + ``config.json``).
    """

    cfg = config if isinstance(config, WblConfig) else WblConfig.from_json(config or {})
    if cfg.crop % 4:
        raise ValueError("config.crop must be a multiple of 4")
    if cfg.prefill not in ("telea", "none"):
        raise ValueError(f"unknown prefill {cfg.prefill!r}; use 'telea' or 'none'")
    dev = resolve_device(device)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    examples = prepare_examples(image_paths_or_arrays, masks, cfg)

    nets = WblNetworks(cfg.width, cfg.n_res, residual=cfg.prefill != "none")
    if init_from is not None:
        nets.load_state_dict(WblInpainter.load(init_from).nets.state_dict())
    nets.to(dev).train()
    opt = torch.optim.Adam(nets.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    history: list[dict] = []
    window: list[tuple[float, float, float]] = []
    t0 = time.time()
    for step in range(1, cfg.steps + 1):
        # a short (CPU) run ends on small steps instead of wherever Adam's noise leaves it
        decay = 0.5 * (1 + math.cos(math.pi * (step - 1) / max(1, cfg.steps - 1)))
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * decay)
        rgb, grey, edges, edges_in, mask, w, pre = (None if t is None else t.to(dev)
                                                    for t in sample_batch(examples, rng, cfg, cfg.batch_size))
        e_pred = nets.predict_edges(grey, edges_in, mask)
        edge_loss = weighted_boundary_loss(edges, e_pred, w)
        use_gt = rng.random() < cfg.gt_edge_prob
        e_in = edges if use_gt else e_pred.detach()
        e_full = edges_in * (1 - mask) + e_in * mask
        out = nets.fill(rgb, e_full, mask, pre)
        image_loss = weighted_boundary_loss(rgb, out, w)
        loss = edge_loss + cfg.image_weight * image_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append((loss.item(), edge_loss.item(), image_loss.item()))
        if step % cfg.log_every == 0 or step == cfg.steps:
            arr = np.array(window)
            rec = {"step": step, "loss": float(arr[:, 0].mean()), "edge_wbl": float(arr[:, 1].mean()),
                   "image_wbl": float(arr[:, 2].mean()), "seconds": round(time.time() - t0, 2)}
            history.append(rec)
            window.clear()
            if not math.isfinite(rec["loss"]):
                raise FloatingPointError(f"WBL training diverged at step {step} (loss {rec['loss']})")
            if progress_callback is not None:
                progress_callback(step, cfg.steps, dict(rec))

    return save_versioned_artifact(
        cfg.output_dir, {WEIGHTS_FILE: nets.state_dict()},
        {"config": cfg.to_json(), "device": dev, "num_images": len(examples), "history": history,
         "final_loss": history[-1]["loss"] if history else None, "train_seconds": round(time.time() - t0, 2)},
        fmt=FORMAT, format_version=FORMAT_VERSION, config_file=CONFIG_FILE)


# --- inference -----------------------------------------------------------------------------------

def find_artifact(path: str | os.PathLike) -> Path:
    return find_versioned_artifact(path, CONFIG_FILE, WEIGHTS_FILE, "no trained WBL inpainter; train one with train_wbl_inpainter")


class WblInpainter:
    """The trained inpainter, implementing the `Inpainter` protocol of `inpaint.py`."""

    name = "wbl"

    def __init__(self, nets: WblNetworks, cfg: WblConfig, *, version: str = "", device: str | None = None):
        self.device = resolve_device(device)
        self.nets = nets.to(self.device).eval()
        self.cfg = cfg
        self.version = version

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> "WblInpainter":
        from safetensors.torch import load_file

        art = find_artifact(path)
        meta = json.loads((art / CONFIG_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{art} is not a {FORMAT} artifact")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{art} was saved by a newer format (v{meta['format_version']}); update the code")
        cfg = WblConfig.from_json(meta.get("config", {}))
        nets = WblNetworks(cfg.width, cfg.n_res, residual=cfg.prefill != "none")
        nets.load_state_dict(load_file(str(art / WEIGHTS_FILE)))
        return cls(nets, cfg, version=meta.get("version", art.name), device=device)

    @torch.inference_mode()
    def _run(self, rgb: np.ndarray, unknown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network fill of `unknown` for a crop; returns (rgb float [0,1], edges) at crop size."""
        h, w = unknown.shape
        ph, pw = (-h) % 4, (-w) % 4
        filled, edges = known_edges(rgb, unknown, self.cfg)
        rgb_t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255.0)
        grey_t = 0.299 * rgb_t[:, 0:1] + 0.587 * rgb_t[:, 1:2] + 0.114 * rgb_t[:, 2:3]
        e_t = torch.from_numpy(edges)[None, None].float()
        m_t = torch.from_numpy(unknown.astype(np.float32))[None, None]
        pre_t = None if self.cfg.prefill == "none" else torch.from_numpy(filled).permute(2, 0, 1)[None].float().div(255.0)
        if ph or pw:
            pad = (0, pw, 0, ph)
            rgb_t, grey_t, e_t = (F.pad(t, pad, mode="replicate") for t in (rgb_t, grey_t, e_t))
            pre_t = None if pre_t is None else F.pad(pre_t, pad, mode="replicate")
            m_t = F.pad(m_t, pad, value=1.0)
        dev = self.device
        e_pred, out = self.nets(rgb_t.to(dev), grey_t.to(dev), e_t.to(dev), m_t.to(dev),
                                None if pre_t is None else pre_t.to(dev))
        out = out[0, :, :h, :w].permute(1, 2, 0).float().cpu().numpy()
        return out, e_pred[0, 0, :h, :w].float().cpu().numpy()

    def inpaint(self, rgb: np.ndarray, hole_mask: np.ndarray, protect_mask: np.ndarray | None = None) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be H x W x 3 uint8, got {rgb.shape} {rgb.dtype}")
        hole = _bool_mask(hole_mask, rgb.shape[:2], "hole_mask")
        protect = _bool_mask(protect_mask, rgb.shape[:2], "protect_mask") if protect_mask is not None else None
        if protect is not None:
            hole = hole & ~protect
        result = rgb.copy()
        if not hole.any():
            return result
        unknown = hole | protect if protect is not None else hole
        # crop around the hole with context, downscaled when large
        ys, xs = np.nonzero(hole)
        H, W = hole.shape
        m = self.cfg.infer_margin + int(0.25 * max(ys.max() - ys.min(), xs.max() - xs.min()))
        y0, y1 = max(0, ys.min() - m), min(H, ys.max() + m + 1)
        x0, x1 = max(0, xs.min() - m), min(W, xs.max() + m + 1)
        crop, unk = rgb[y0:y1, x0:x1], unknown[y0:y1, x0:x1]
        ch, cw = unk.shape
        scale = min(1.0, self.cfg.infer_max_side / max(ch, cw))
        if scale < 1.0:
            sh, sw = max(4, round(ch * scale)), max(4, round(cw * scale))
            small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
            unk_s = cv2.resize(unk.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
            unk_s |= cv2.resize(cv2.dilate(unk.astype(np.uint8), np.ones((3, 3), np.uint8)), (sw, sh),
                                interpolation=cv2.INTER_AREA) > 0
            filled, _ = self._run(small, unk_s)
            filled = cv2.resize(filled, (cw, ch), interpolation=cv2.INTER_CUBIC)
        else:
            filled, _ = self._run(np.ascontiguousarray(crop), unk)
        filled_u8 = np.clip(np.rint(filled * 255.0), 0, 255).astype(np.uint8)
        region = result[y0:y1, x0:x1]
        hc = hole[y0:y1, x0:x1]
        region[hc] = filled_u8[hc]
        return result


def wbl_inpainter_from_env(device: str | None = None) -> "WblInpainter | None":
    """The trained inpainter named by ``STAGECRAFT_WBL_INPAINTER``, or None when it is not set."""
    path = os.environ.get(WBL_ENV)
    return WblInpainter.load(path, device=device) if path else None


def _bool_mask(mask: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.shape != shape:
        raise ValueError(f"{what} has shape {m.shape}, expected {shape}")
    return m > (0.5 if m.dtype.kind == "f" else 0)
