"""pix2pix-style vanilla staging baseline: product on white -> staged photo.

A conditional image-to-image GAN (Isola et al., 2017): a U-Net generator with skip connections
and a PatchGAN discriminator on (input, output) pairs, trained with the vanilla GAN loss plus
``lambda_l1`` * L1. Training pairs are built from staged/catalog photos: the product is cut out
(mask given, or ``core.ml.segmentation.segment_product``) and put on white as the input; the real
photo is the target. As in the paper, dropout stays on at test time and is the only noise source,
so seeds give different (reproducible) candidates.

Public API (no Django):

    artifact_dir = train_pix2pix(photos, masks=None, config=Pix2PixConfig(...),
                                 progress_callback=cb, device=None)   # cb(step, total, metrics)
    backend = Pix2PixBackend(model_dir)   # or env STAGECRAFT_PIX2PIX_MODEL; registered "pix2pix-baseline"
    backend.generate(ProductInput(...), seed=0, num_candidates=2)

This is a baseline: it learns a generic "what is around a product" mapping and is expected to be
far below the diffusion backends in quality; the product pixels are pasted back exactly.
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

from .backends import BackendUnavailable, Candidate, GenerationFailed, GeneratorBackend, ProductInput, register
from .diffusion_utils import (
    as_rgb,
    find_versioned_artifact,
    paste_product,
    product_alpha,
    resolve_device,
    save_versioned_artifact,
)

PIX2PIX_ENV = "STAGECRAFT_PIX2PIX_MODEL"
FORMAT = "stagecraft-pix2pix"
FORMAT_VERSION = 1
WEIGHTS_FILE = "pix2pix_generator.safetensors"
DISCRIMINATOR_FILE = "pix2pix_discriminator.safetensors"
CONFIG_FILE = "config.json"

TrainProgress = Callable[[int, int, dict], None]


@dataclass
class Pix2PixConfig:
    steps: int = 5000
    batch_size: int = 4
    size: int = 256  # square working size; must be divisible by 2 ** n_down
    n_down: int = 8  # U-Net depth (8 at 256 px as in pix2pix)
    ngf: int = 32
    ndf: int = 32
    n_layers_d: int = 3  # PatchGAN depth (3 -> 70x70 receptive field)
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_l1: float = 100.0
    dropout: float = 0.5
    flip: bool = True
    seed: int = 0
    log_every: int = 10
    output_dir: str = "var/models/pix2pix"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Pix2PixConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# --- networks ------------------------------------------------------------------------------------

class UNetGenerator(nn.Module):
    """pix2pix U-Net: n_down stride-2 convs (LeakyReLU), mirrored transposed convs with skips;
    instance norm (batch size is small), dropout in the three innermost decoder layers; tanh."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 32, n_down: int = 8, dropout: float = 0.5):
        super().__init__()
        chans = [min(ngf * 2 ** i, ngf * 8) for i in range(n_down)]
        self.downs = nn.ModuleList()
        prev = in_ch
        for i, c in enumerate(chans):
            layers: list[nn.Module] = []
            if i > 0:
                layers.append(nn.LeakyReLU(0.2, True))
            layers.append(nn.Conv2d(prev, c, 4, 2, 1))
            if 0 < i < n_down - 1:
                layers.append(nn.InstanceNorm2d(c))
            self.downs.append(nn.Sequential(*layers))
            prev = c
        self.ups = nn.ModuleList()
        for i in reversed(range(n_down)):
            inner = chans[i] if i == n_down - 1 else chans[i] * 2
            out = out_ch if i == 0 else chans[i - 1]
            layers = [nn.ReLU(True), nn.ConvTranspose2d(inner, out, 4, 2, 1)]
            if i > 0:
                layers.append(nn.InstanceNorm2d(out))
                if dropout > 0 and i >= n_down - 3:
                    layers.append(nn.Dropout(dropout))
            else:
                layers.append(nn.Tanh())
            self.ups.append(nn.Sequential(*layers))

    def forward(self, x):
        skips = []
        for d in self.downs:
            x = d(x)
            skips.append(x)
        skips.pop()
        for j, u in enumerate(self.ups):
            if j > 0:
                x = torch.cat([x, skips.pop()], 1)
            x = u(x)
        return x


class PatchDiscriminator(nn.Module):
    """PatchGAN on cat(input, image): one logit per overlapping patch."""

    def __init__(self, in_ch: int = 6, ndf: int = 32, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1), nn.InstanceNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


# --- data ----------------------------------------------------------------------------------------

def _load_rgb(item: Any) -> np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        from core.ml.images import load_rgb

        return load_rgb(Path(item))
    return as_rgb(item, "training image")


def _square(img: np.ndarray, size: int, interp=cv2.INTER_AREA) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = img[y0:y0 + s, x0:x0 + s]
    return cv2.resize(crop, (size, size), interpolation=interp if s > size else cv2.INTER_CUBIC)


def product_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[:, :, None]
    return np.clip(np.rint(a * rgb + (1 - a) * 255.0), 0, 255).astype(np.uint8)


def make_staging_pair(photo: Any, mask: Any = None, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(product on white, real photo), both size x size uint8 (centre square crop)."""
    rgb = _load_rgb(photo)
    if mask is None:
        from core.ml.segmentation import segment_product

        alpha = segment_product(rgb).alpha
    else:
        alpha = np.asarray(mask, dtype=np.float32)
        if alpha.ndim == 3:
            alpha = alpha[..., 0]
        if alpha.max(initial=0) > 1:
            alpha = alpha / 255.0
    if alpha.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {alpha.shape} does not match image {rgb.shape[:2]}")
    return _square(product_on_white(rgb, alpha), size), _square(rgb, size)


def _to_tensor(batch: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# --- training ------------------------------------------------------------------------------------

def train_pix2pix(
    photos: Sequence[Any] = (),
    masks: Sequence[Any] | None = None,
    config: Pix2PixConfig | dict | None = None,
    progress_callback: TrainProgress | None = None,
    device: str | None = None,
    *,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> Path:
    """Train the baseline on (product on white -> staged photo) pairs; return the artifact folder.

    ``photos``: staged photos (paths or HxWx3 uint8); ``masks[i]`` their product masks (None to
    segment). Or give ready ``pairs`` of (input, target) arrays. Writes
    ``config.output_dir/<version>/`` with the generator (and discriminator) safetensors + config.json.
    """

    cfg = config if isinstance(config, Pix2PixConfig) else Pix2PixConfig.from_json(config or {})
    if cfg.size % (2 ** cfg.n_down):
        raise ValueError(f"config.size={cfg.size} must be divisible by 2**n_down={2 ** cfg.n_down}")
    dev = resolve_device(device)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    if pairs is None:
        if masks is not None and len(masks) != len(photos):
            raise ValueError(f"{len(photos)} photos but {len(masks)} masks")
        pairs = [make_staging_pair(p, None if masks is None else masks[i], cfg.size) for i, p in enumerate(photos)]
    else:
        pairs = [(_square(as_rgb(a), cfg.size), _square(as_rgb(b), cfg.size)) for a, b in pairs]
    if not pairs:
        raise ValueError("no training pairs")

    G = UNetGenerator(3, 3, cfg.ngf, cfg.n_down, cfg.dropout).to(dev).train()
    D = PatchDiscriminator(6, cfg.ndf, cfg.n_layers_d).to(dev).train()
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    bce = nn.BCEWithLogitsLoss()
    history: list[dict] = []
    window: list[tuple[float, float, float]] = []
    t0 = time.time()
    for step in range(1, cfg.steps + 1):
        idx = rng.integers(len(pairs), size=cfg.batch_size)
        xs, ys = [], []
        for i in idx:
            a, b = pairs[int(i)]
            if cfg.flip and rng.random() < 0.5:
                a, b = a[:, ::-1], b[:, ::-1]
            xs.append(np.ascontiguousarray(a))
            ys.append(np.ascontiguousarray(b))
        x, y = _to_tensor(xs).to(dev), _to_tensor(ys).to(dev)
        fake = G(x)
        # discriminator
        d_real = D(torch.cat([x, y], 1))
        d_fake = D(torch.cat([x, fake.detach()], 1))
        loss_d = 0.5 * (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator
        d_fake = D(torch.cat([x, fake], 1))
        loss_gan = bce(d_fake, torch.ones_like(d_fake))
        loss_l1 = F.l1_loss(fake, y)
        loss_g = loss_gan + cfg.lambda_l1 * loss_l1
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        window.append((loss_g.item(), loss_l1.item(), loss_d.item()))
        if step % cfg.log_every == 0 or step == cfg.steps:
            arr = np.array(window)
            rec = {"step": step, "loss_g": float(arr[:, 0].mean()), "l1": float(arr[:, 1].mean()),
                   "loss_d": float(arr[:, 2].mean()), "seconds": round(time.time() - t0, 2)}
            window.clear()
            history.append(rec)
            if not all(math.isfinite(v) for v in (rec["loss_g"], rec["loss_d"])):
                raise FloatingPointError(f"pix2pix training diverged at step {step}: {rec}")
            if progress_callback is not None:
                progress_callback(step, cfg.steps, dict(rec))

    return save_versioned_artifact(
        cfg.output_dir, {WEIGHTS_FILE: G.state_dict(), DISCRIMINATOR_FILE: D.state_dict()},
        {"config": cfg.to_json(), "device": dev, "num_pairs": len(pairs), "history": history,
         "final_l1": history[-1]["l1"] if history else None, "train_seconds": round(time.time() - t0, 2)},
        fmt=FORMAT, format_version=FORMAT_VERSION, config_file=CONFIG_FILE)


def find_artifact(path: str | os.PathLike) -> Path:
    return find_versioned_artifact(path, CONFIG_FILE, WEIGHTS_FILE, "no trained pix2pix generator")


def load_generator(path: str | os.PathLike, device: str | None = None) -> tuple[UNetGenerator, Pix2PixConfig, str]:
    from safetensors.torch import load_file

    art = find_artifact(path)
    meta = json.loads((art / CONFIG_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{art} is not a {FORMAT} artifact")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{art} was saved by a newer format (v{meta['format_version']}); update the code")
    cfg = Pix2PixConfig.from_json(meta.get("config", {}))
    G = UNetGenerator(3, 3, cfg.ngf, cfg.n_down, cfg.dropout)
    G.load_state_dict(load_file(str(art / WEIGHTS_FILE)))
    return G.to(resolve_device(device)).eval(), cfg, meta.get("version", art.name)


# --- backend -------------------------------------------------------------------------------------

@register
class Pix2PixBackend(GeneratorBackend):
    """Vanilla pix2pix staging baseline from a trained artifact folder."""

    name = "pix2pix-baseline"
    version = "1.0"

    def __init__(self, model_dir: str | os.PathLike | None = None, *, device: str | None = None):
        self.model_dir = str(model_dir) if model_dir is not None else (os.environ.get(PIX2PIX_ENV) or None)
        self.device = device
        self._loaded: tuple[UNetGenerator, Pix2PixConfig, str] | None = None

    def availability(self) -> tuple[bool, str]:
        if not self.model_dir:
            return False, (f"no pix2pix model trained: train one with generation.ml.pix2pix.train_pix2pix "
                           f"and set {PIX2PIX_ENV} to its output folder")
        try:
            find_artifact(self.model_dir)
        except FileNotFoundError as exc:
            return False, f"{PIX2PIX_ENV}={self.model_dir!r}: {exc}; train one with train_pix2pix"
        return True, ""

    def _generator(self):
        if self._loaded is None:
            self._loaded = load_generator(self.model_dir, self.device)
        return self._loaded

    def generate(self, product: ProductInput, *, seed: int, num_candidates: int = 1, **params: Any) -> list[Candidate]:
        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailable(reason)
        if num_candidates < 1:
            raise GenerationFailed("num_candidates must be at least 1")
        G, cfg, version = self._generator()
        rgb = as_rgb(product.image, "product image")
        alpha = product_alpha(product, rgb)
        h, w = rgb.shape[:2]
        # letterbox the product-on-white input into the square working size (white padding)
        s = max(h, w)
        canvas = np.full((s, s, 3), 255, np.uint8)
        y0, x0 = (s - h) // 2, (s - w) // 2
        canvas[y0:y0 + h, x0:x0 + w] = product_on_white(rgb, alpha)
        x = _to_tensor([cv2.resize(canvas, (cfg.size, cfg.size), interpolation=cv2.INTER_AREA)])
        dev = next(G.parameters()).device
        stochastic = bool(params.get("stochastic", True))
        out: list[Candidate] = []
        for i in range(num_candidates):
            cand_seed = int(seed) + i
            for m in G.modules():
                if isinstance(m, nn.Dropout):
                    m.train(stochastic)
            with torch.random.fork_rng(devices=[]), torch.inference_mode():
                torch.manual_seed(cand_seed)
                y = G(x.to(dev))[0].float().cpu()
            img = ((y.permute(1, 2, 0).numpy() + 1.0) * 127.5).clip(0, 255).round().astype(np.uint8)
            img = cv2.resize(img, (s, s), interpolation=cv2.INTER_CUBIC)[y0:y0 + h, x0:x0 + w]
            final = paste_product(img, rgb, alpha)
            out.append(Candidate(image=final, product_mask=alpha.copy(), metadata={
                "backend": self.name, "version": self.version, "model_version": version, "seed": cand_seed,
                "working_size": cfg.size, "dropout_noise": stochastic, "product_pasted_back": True}))
        return out
