"""Retrieval-assisted copy-paste staging (Ku et al., AdKDD 2023) and the paste-on-stage baseline.

``copy-paste``: for a product photo on a plain background,

1. cut the product out (`cutout.cut_out_product`: shared segmenter, edge decontamination);
2. embed it (shared image encoder, product on white) and retrieve the top catalog scenes
   (`retrieval.CatalogIndex.search`: cosine similarity − fit_weight · uncovered silhouette,
   within the product's category, falling back to all categories with a notice);
3. for each retrieved scene: scale the new product to fit the old product's box (keep aspect),
   centre it and stand it on the old product's base line; inpaint old ∪ new silhouettes once
   (the *clean plate*; Telea for thin holes, PatchMatch for larger ones), so no old-product pixel
   and no product colour can leak into the fill; match the product's white balance/brightness
   to the scene around it; add a contact shadow; composite with a slightly feathered alpha.

``paste-on-stage``: the baseline the paper compares against — the same cut-out, colour match
and shadow, pasted on a stage (empty scene) picked at random (seeded) with no retrieval.

Both return `StagedCandidate` objects (a `Candidate` with an extra ``layers`` attribute holding
the clean plate and the product layer, which `parallax.render_parallax` animates).
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from generation.ml.backends import (
    BackendUnavailable,
    Candidate,
    GenerationFailed,
    GeneratorBackend,
    ProductInput,
    register,
)
from generation.ml.cutout import Cutout, cut_out_product
from generation.ml.inpaint import INPAINTER_NAMES, AutoInpainter, Inpainter, named_inpainter
from generation.ml.retrieval import CatalogIndex, EmptyCatalog, placement_in_box, product_on_white
from generation.ml.shadows import apply_shadow, composite, contact_shadow, feather_alpha, match_colour

__all__ = [
    "CatalogSource",
    "InMemoryCatalogSource",
    "FolderCatalogSource",
    "StageSource",
    "FolderStageSource",
    "StagedLayers",
    "StagedCandidate",
    "stage_on_scene",
    "paste_on_stage",
    "load_index_cached",
    "CopyPasteStagingBackend",
    "PasteOnStageBackend",
]


# ---------------------------------------------------------------------------- catalog / stage access
@runtime_checkable
class CatalogSource(Protocol):
    """Where the backend reads a retrieved catalog scene. The Django side implements it over its
    storage (e.g. a `CatalogPhoto` row's image file and stored mask).

    ``get(item_id)`` returns ``(rgb, alpha)``: the staged scene (H x W x 3 uint8 RGB) and the
    catalog product's alpha in it (H x W float32 in [0, 1]; a bool/uint8 mask is accepted).
    Raise ``KeyError`` for an unknown id.
    """

    def get(self, item_id: str) -> tuple[np.ndarray, np.ndarray]: ...


class InMemoryCatalogSource:
    def __init__(self, items: dict[str, tuple[np.ndarray, np.ndarray]] | None = None):
        self.items = dict(items or {})

    def put(self, item_id: str, rgb: np.ndarray, alpha: np.ndarray) -> None:
        self.items[item_id] = (rgb, alpha)

    def get(self, item_id: str) -> tuple[np.ndarray, np.ndarray]:
        return self.items[item_id]


def _safe_name(item_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", item_id)


class FolderCatalogSource:
    """Scenes as ``<root>/<id>.png`` (RGB) + ``<root>/<id>.alpha.png`` (8-bit alpha)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def put(self, item_id: str, rgb: np.ndarray, alpha: np.ndarray) -> None:
        from PIL import Image

        self.root.mkdir(parents=True, exist_ok=True)
        name = _safe_name(item_id)
        Image.fromarray(np.ascontiguousarray(rgb)).save(self.root / f"{name}.png")
        a = np.asarray(alpha)
        a8 = np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8) if a.dtype.kind == "f" else (a > 0).astype(np.uint8) * 255
        Image.fromarray(a8).save(self.root / f"{name}.alpha.png")

    def get(self, item_id: str) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        name = _safe_name(item_id)
        path = self.root / f"{name}.png"
        if not path.is_file():
            raise KeyError(item_id)
        rgb = np.asarray(Image.open(path).convert("RGB"))
        alpha = np.asarray(Image.open(self.root / f"{name}.alpha.png").convert("L"), np.float32) / 255.0
        return rgb, alpha


@runtime_checkable
class StageSource(Protocol):
    """Empty stages for the paste-on-stage baseline: ``ids()`` and ``get(id) -> rgb``."""

    def ids(self) -> list[str]: ...

    def get(self, stage_id: str) -> np.ndarray: ...


class FolderStageSource:
    """Every .jpg/.jpeg/.png/.webp file in a folder is a stage (id = file name)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))

    def get(self, stage_id: str) -> np.ndarray:
        from core.ml.images import load_rgb

        return load_rgb(self.root / stage_id)


class _ListStageSource:
    def __init__(self, images: Sequence[np.ndarray]):
        self.images = list(images)

    def ids(self) -> list[str]:
        return [f"stage-{i}" for i in range(len(self.images))]

    def get(self, stage_id: str) -> np.ndarray:
        return self.images[int(stage_id.split("-")[1])]


# ---------------------------------------------------------------------------- staging core
@dataclass
class StagedLayers:
    """Everything needed to re-render a staged image (parallax, re-lighting)."""

    image: np.ndarray  # H x W x 3 uint8 final composite
    clean_plate: np.ndarray  # H x W x 3 uint8 scene with old ∪ new product regions inpainted
    product_rgb: np.ndarray  # H x W x 3 uint8 product colour (decontaminated, colour-matched)
    product_alpha: np.ndarray  # H x W float32 product alpha (feathered)
    shadow: np.ndarray  # H x W float32 shadow strength in [0, 1]
    box: tuple[int, int, int, int]  # placed product box (x0, y0, x1, y1) in pixels


@dataclass
class StagedCandidate(Candidate):
    layers: StagedLayers | None = None


def _resize_long_side(img: np.ndarray, size: int, interp=cv2.INTER_AREA) -> np.ndarray:
    h, w = img.shape[:2]
    s = size / max(h, w)
    if abs(s - 1) < 1e-6:
        return img
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    return cv2.resize(img, (nw, nh), interpolation=interp if s < 1 else cv2.INTER_CUBIC)


def _alpha_f32(alpha: np.ndarray) -> np.ndarray:
    a = np.asarray(alpha)
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype.kind in "ui":
        return (a.astype(np.float32) / (255.0 if a.max() > 1 else 1.0)).clip(0, 1)
    return np.clip(a.astype(np.float32), 0, 1)


def _place_product(cut: Cutout, scene_hw: tuple[int, int], box: tuple[int, int, int, int]):
    """Resize the cut-out's product to ``box`` (x0, y0, x1, y1) and lay it on a scene-sized canvas."""
    h, w = scene_hw
    x0, y0, x1, y1 = box
    crop = cut.crop()
    bw, bh = x1 - x0, y1 - y0
    interp = cv2.INTER_AREA if bw < crop.rgba.shape[1] else cv2.INTER_CUBIC
    rgba = cv2.resize(crop.rgba, (bw, bh), interpolation=interp)
    rgb = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.float32)
    rgb[y0:y1, x0:x1] = rgba[..., :3]
    alpha[y0:y1, x0:x1] = rgba[..., 3].astype(np.float32) / 255.0
    return rgb, alpha


def _check_fits(pw: int, ph: int, h: int, w: int, what: str):
    if pw > w or ph > h:
        raise GenerationFailed(
            f"the product ({pw}x{ph} px at the requested scale) is larger than the scene ({w}x{h} px) {what}; "
            "use a smaller scale"
        )
    if pw < 8 or ph < 8:
        raise GenerationFailed(f"the product would be only {pw}x{ph} px in the scene {what}; too small to stage")


def _finish(scene_plate, prod_rgb, prod_alpha, box, *, colour_match: bool, shadow_opacity: float, timings: dict, meta: dict):
    h, w = prod_alpha.shape
    t = time.perf_counter()
    x0, y0, x1, y1 = box
    if colour_match:
        m = max(8, int(0.3 * max(x1 - x0, y1 - y0)))
        region = np.zeros((h, w), bool)
        region[max(0, y0 - m) : min(h, y1 + m), max(0, x0 - m) : min(w, x1 + m)] = True
        region &= prod_alpha < 0.02
        matched, gains = match_colour(prod_rgb[y0:y1, x0:x1], prod_alpha[y0:y1, x0:x1], scene_plate, region)
        prod_rgb = prod_rgb.copy()
        # the whole box: outside the silhouette the cut-out holds the nearest product colour, so
        # the feathered edge blends toward product colour, never toward black
        prod_rgb[y0:y1, x0:x1] = matched
        meta["colour_match"] = gains
    shadow = contact_shadow(prod_alpha, opacity=shadow_opacity) if shadow_opacity > 0 else np.zeros_like(prod_alpha)
    soft = feather_alpha(prod_alpha, 0.6)
    image = composite(apply_shadow(scene_plate, shadow), prod_rgb, soft)
    timings["composite_s"] = round(time.perf_counter() - t, 4)
    return StagedLayers(image, scene_plate, prod_rgb, soft, shadow, box)


def stage_on_scene(
    cut: Cutout,
    scene_rgb: np.ndarray,
    old_alpha: np.ndarray,
    *,
    size: int = 512,
    scale: float = 1.0,
    inpainter: Inpainter | None = None,
    seed: int = 0,
    colour_match: bool = True,
    shadow_opacity: float = 0.5,
) -> tuple[StagedLayers, dict[str, Any]]:
    """Replace the product in a staged scene by ``cut`` (copy-paste staging of one candidate).

    ``scene_rgb``/``old_alpha``: the retrieved catalog scene and its product's alpha. The scene is
    resized so its longer side is ``size``. The new product is fit inside the old product's box
    (times ``scale``), centred, standing on the old base line. Returns the layers and metadata.
    """
    timings: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    scene = _resize_long_side(np.ascontiguousarray(scene_rgb[..., :3]).astype(np.uint8), size)
    h, w = scene.shape[:2]
    old = cv2.resize(_alpha_f32(old_alpha), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
    if old.sum() < 16:
        raise GenerationFailed("the retrieved catalog scene has no product mask; it cannot be used for copy-paste")
    ys, xs = np.nonzero(old)
    ox0, oy0, ox1, oy1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    cx0, cy0, cx1, cy1 = cut.box
    pw, ph = cx1 - cx0, cy1 - cy0
    bx0, by0, bx1, by1 = placement_in_box(pw, ph, ox1 - ox0, oy1 - oy0)
    nw, nh = max(1, round((bx1 - bx0) * scale)), max(1, round((by1 - by0) * scale))
    _check_fits(nw, nh, h, w, "retrieved")
    centre = ox0 + (bx0 + bx1) / 2.0
    x0 = int(round(centre - nw / 2.0))
    y1 = oy1  # stand on the old product's base line
    x0 = min(max(x0, 0), w - nw)
    y0 = min(max(y1 - nh, 0), h - nh)
    box = (x0, y0, x0 + nw, y0 + nh)
    prod_rgb, prod_alpha = _place_product(cut, (h, w), box)
    new = prod_alpha >= 0.5
    timings["place_s"] = round(time.perf_counter() - t0, 4)

    t, c = time.perf_counter(), time.process_time()
    r_old = max(3, int(round(0.015 * max(ox1 - ox0, oy1 - oy0))))
    old_grown = cv2.dilate(old.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r_old + 1,) * 2)) > 0
    new_grown = cv2.dilate((prod_alpha > 0.02).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    hole = old_grown | new_grown
    inp = inpainter if inpainter is not None else AutoInpainter(seed=seed)
    plate = inp.inpaint(scene, hole)
    timings["inpaint_s"] = round(time.perf_counter() - t, 4)
    timings["inpaint_cpu_s"] = round(time.process_time() - c, 4)
    inpainter_name = getattr(inp, "last_choice", "") or inp.name

    uncovered = old & ~new
    meta: dict[str, Any] = {
        "scene_size": [w, h],
        "placement_box": [int(v) for v in box],
        "catalog_box": [ox0, oy0, ox1, oy1],
        "uncovered_fraction": round(float(uncovered.sum() / old.sum()), 6),
        "inpainted_fraction": round(float(hole.mean()), 6),
        "inpainter": inpainter_name,
    }
    if getattr(inp, "version", ""):
        meta["inpainter_version"] = inp.version
    layers = _finish(plate, prod_rgb, prod_alpha, box, colour_match=colour_match, shadow_opacity=shadow_opacity, timings=timings, meta=meta)
    timings["total_s"] = round(time.perf_counter() - t0, 4)
    timings["total_cpu_s"] = round(time.process_time() - c0, 4)  # process CPU time (1 thread: one core)
    meta["timings"] = timings
    return layers, meta


def paste_on_stage(
    cut: Cutout,
    stage_rgb: np.ndarray,
    *,
    size: int = 512,
    height_fraction: float = 0.42,
    ground: float = 0.86,
    x_centre: float = 0.5,
    colour_match: bool = True,
    shadow_opacity: float = 0.5,
) -> tuple[StagedLayers, dict[str, Any]]:
    """Paste ``cut`` on an empty stage: product height = ``height_fraction`` of the scene (shrunk to
    90 % of the width if wider), base line at ``ground`` (fraction of the height), centred at
    ``x_centre``. Raises `GenerationFailed` when the product would be larger than the scene."""
    timings: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    stage = _resize_long_side(np.ascontiguousarray(stage_rgb[..., :3]).astype(np.uint8), size)
    h, w = stage.shape[:2]
    if height_fraction <= 0:
        raise GenerationFailed("height_fraction must be positive")
    cx0, cy0, cx1, cy1 = cut.box
    pw, ph = cx1 - cx0, cy1 - cy0
    nh = round(height_fraction * h)
    nw = round(pw * nh / ph)
    if nw > 0.9 * w and nh <= h:  # a wide product on a narrow stage: fit 90 % of the width
        nw = int(0.9 * w)
        nh = max(1, round(ph * nw / pw))
    _check_fits(nw, nh, h, w, "stage")
    x0 = int(round(x_centre * w - nw / 2))
    x0 = min(max(x0, 0), w - nw)
    y1 = int(round(ground * h))
    y0 = min(max(y1 - nh, 0), h - nh)
    box = (x0, y0, x0 + nw, y0 + nh)
    prod_rgb, prod_alpha = _place_product(cut, (h, w), box)
    timings["place_s"] = round(time.perf_counter() - t0, 4)
    meta: dict[str, Any] = {"scene_size": [w, h], "placement_box": [int(v) for v in box], "inpainter": None}
    layers = _finish(stage, prod_rgb, prod_alpha, box, colour_match=colour_match, shadow_opacity=shadow_opacity, timings=timings, meta=meta)
    timings["total_s"] = round(time.perf_counter() - t0, 4)
    timings["total_cpu_s"] = round(time.process_time() - c0, 4)
    meta["timings"] = timings
    return layers, meta


def _product_cutout(product: ProductInput, segmenter) -> tuple[Cutout, float]:
    t = time.perf_counter()
    alpha = None if product.mask is None else _alpha_f32(product.mask)
    cut = cut_out_product(np.asarray(product.image), alpha=alpha, segmenter=segmenter)
    return cut, time.perf_counter() - t


# ---------------------------------------------------------------------------- backends
_INDEX_CACHE: dict[str, tuple[float, CatalogIndex]] = {}


def load_index_cached(folder: str | os.PathLike) -> CatalogIndex:
    """`CatalogIndex.load`, cached per process until the folder's meta.json changes (a worker
    generating many requests loads a large index once)."""
    key = str(Path(folder).resolve())
    meta = Path(key) / "meta.json"
    mtime = meta.stat().st_mtime_ns if meta.is_file() else -1
    hit = _INDEX_CACHE.get(key)
    if hit is None or hit[0] != mtime:
        hit = (mtime, CatalogIndex.load(key))
        _INDEX_CACHE[key] = hit
    return hit[1]

@register
class CopyPasteStagingBackend(GeneratorBackend):
    """Retrieval-assisted copy-paste staging. Needs a `CatalogIndex` and a `CatalogSource`, given
    to the constructor or per call as ``generate(..., index=..., source=...)``."""

    name = "copy-paste"
    version = "1.0.0"

    def __init__(
        self,
        index: CatalogIndex | str | os.PathLike | None = None,
        source: CatalogSource | None = None,
        *,
        encoder=None,
        segmenter=None,
        inpainter: Inpainter | None = None,
        wbl_model: str | os.PathLike | None = None,
        size: int = 512,
        fit_weight: float = 0.5,
    ):
        self.index = load_index_cached(index) if isinstance(index, (str, os.PathLike)) else index
        self.source = source
        self.encoder = encoder
        self.segmenter = segmenter
        self.inpainter = inpainter
        self.wbl_model = wbl_model  # trained WBL artifact (or folder of versions) for inpainter="wbl"
        self.size = int(size)
        self.fit_weight = float(fit_weight)

    def availability(self) -> tuple[bool, str]:
        if self.index is None or self.source is None:
            return False, "copy-paste needs a catalog index and a catalog source; build the catalog index first"
        if len(self.index) == 0:
            return False, "the catalog index is empty: add staged catalog photos before generating"
        return True, ""

    def _inpainter(self, name: str | None, version: str | None, seed: int) -> Inpainter:
        """The constructor's inpainter object, else the one called ``name`` (default ``auto``);
        ``version`` picks a WBL version inside ``wbl_model`` instead of the newest."""
        if name is None and self.inpainter is not None:
            return self.inpainter
        name = name or "auto"
        if name not in INPAINTER_NAMES:
            raise GenerationFailed(f"unknown inpainter {name!r}; choose one of {', '.join(INPAINTER_NAMES)}")
        model = self.wbl_model
        if name == "wbl" and model is not None and version:
            model = Path(model) / str(version)
        try:
            return named_inpainter(name, seed=seed, wbl_model=model)
        except FileNotFoundError as exc:
            raise BackendUnavailable(f"the wbl inpainter is not available: {exc}") from None

    def _encoder(self):
        if self.encoder is None:
            from core.ml.embeddings import default_image_encoder

            self.encoder = default_image_encoder()
        return self.encoder

    def generate(self, product: ProductInput, *, seed: int, num_candidates: int = 1, **params: Any) -> list[StagedCandidate]:
        """``params``: ``index``, ``source`` (override the constructor's), ``category`` (override
        ``product.category``), ``size``, ``fit_weight``, ``scale``, ``exclude`` (catalog ids),
        ``shadow_opacity``, ``colour_match``, ``inpainter`` (one of `INPAINTER_NAMES`; default: the
        constructor's inpainter object, else ``auto``), ``wbl_version`` (a version folder inside
        ``wbl_model``; default the newest)."""
        index = params.get("index", self.index)
        source = params.get("source", self.source)
        if isinstance(index, (str, os.PathLike)):
            index = load_index_cached(index)
        if index is None or len(index) == 0:
            raise EmptyCatalog("the catalog index is empty: add staged catalog photos before generating")
        if source is None:
            raise BackendUnavailable("copy-paste needs a catalog source to read the retrieved scenes")
        if num_candidates < 1:
            raise GenerationFailed("num_candidates must be at least 1")
        inpainter_name, wbl_version = params.get("inpainter"), params.get("wbl_version")
        self._inpainter(inpainter_name, wbl_version, seed)  # a bad name or a missing model fails before any work
        t_all = time.perf_counter()
        cut, t_cut = _product_cutout(product, self.segmenter)
        t = time.perf_counter()
        encoder = self._encoder()
        if index.encoder_name and getattr(encoder, "name", "") and index.encoder_name != encoder.name:
            raise BackendUnavailable(
                f"the catalog index was built with encoder {index.encoder_name!r} but the backend uses "
                f"{encoder.name!r}; rebuild the catalog index"
            )
        qvec = encoder.encode([product_on_white(cut.rgb, cut.alpha)], batch_size=1)[0]
        t_embed = time.perf_counter() - t
        category = params.get("category", product.category) or None
        spare = 3
        result = index.search(
            qvec,
            k=num_candidates + spare,
            category=category,
            query_mask=cut.mask,
            fit_weight=float(params.get("fit_weight", self.fit_weight)),
            exclude=params.get("exclude", ()),
        )
        hits = list(result.hits)
        notice = result.notice
        if result.searched_categories != "all" and len(hits) < num_candidates + spare:
            # too few photos in the category: fill up from the other categories, and say so
            more = index.search(
                qvec, k=num_candidates + spare - len(hits), query_mask=cut.mask,
                fit_weight=float(params.get("fit_weight", self.fit_weight)),
                exclude=[h.item_id for h in hits] + list(params.get("exclude", ())),
            )
            if more.hits and len(hits) < num_candidates:
                notice = (
                    f"only {len(hits)} catalog photo(s) in category {category!r}; "
                    "the other candidates come from other categories"
                )
            hits += more.hits
        candidates: list[StagedCandidate] = []
        failures: list[str] = []
        for rank, hit in enumerate(hits):
            if len(candidates) >= num_candidates:
                break
            try:
                scene, old_alpha = source.get(hit.item_id)
            except KeyError:
                failures.append(f"{hit.item_id}: not found in the catalog source")
                continue
            inp = self._inpainter(inpainter_name, wbl_version, seed + rank)
            try:
                layers, meta = stage_on_scene(
                    cut,
                    scene,
                    old_alpha,
                    size=int(params.get("size", self.size)),
                    scale=float(params.get("scale", 1.0)),
                    inpainter=inp,
                    seed=seed + rank,
                    colour_match=bool(params.get("colour_match", True)),
                    shadow_opacity=float(params.get("shadow_opacity", 0.5)),
                )
            except GenerationFailed as exc:
                failures.append(f"{hit.item_id}: {exc}")
                continue
            meta.update(
                {
                    "backend": self.name,
                    "backend_version": self.version,
                    "seed": int(seed),
                    "rank": rank,
                    "source_id": hit.item_id,
                    "source_category": hit.category,
                    "similarity": round(hit.similarity, 6),
                    "retrieval_uncovered_fraction": round(hit.uncovered_fraction, 6),
                    "retrieval_score": round(hit.score, 6),
                    "category": category,
                    "searched_categories": result.searched_categories,
                    "notice": notice,
                    "encoder": getattr(encoder, "name", ""),
                    "segmenter": cut.segmenter,
                }
            )
            meta["timings"].update(
                {"cutout_s": round(t_cut, 4), "embed_s": round(t_embed, 4), "retrieve_s": round(result.seconds, 4)}
            )
            candidates.append(StagedCandidate(layers.image, meta, layers.product_alpha, layers))
        if not candidates:
            raise GenerationFailed("no retrieved catalog scene could be used: " + "; ".join(failures))
        for c in candidates:
            c.metadata["skipped_sources"] = failures
            c.metadata["timings"]["request_total_s"] = round(time.perf_counter() - t_all, 4)
        return candidates


@register
class PasteOnStageBackend(GeneratorBackend):
    """Baseline: paste the cut-out on a stage chosen at random (seeded), with shadow and colour match."""

    name = "paste-on-stage"
    version = "1.0.0"

    def __init__(
        self,
        stages: StageSource | Sequence[np.ndarray] | str | os.PathLike | None = None,
        *,
        segmenter=None,
        size: int = 512,
    ):
        self.stages = self._as_source(stages)
        self.segmenter = segmenter
        self.size = int(size)

    @staticmethod
    def _as_source(stages):
        if stages is None or isinstance(stages, StageSource):
            return stages
        if isinstance(stages, (str, os.PathLike)):
            return FolderStageSource(stages)
        return _ListStageSource(stages)

    def availability(self) -> tuple[bool, str]:
        if self.stages is None or not self.stages.ids():
            return False, "paste-on-stage needs stage images (empty scenes); none are configured"
        return True, ""

    def generate(self, product: ProductInput, *, seed: int, num_candidates: int = 1, **params: Any) -> list[StagedCandidate]:
        """``params``: ``stages`` (override), ``size``, ``height_fraction`` (default 0.42),
        ``ground`` (0.86), ``shadow_opacity``, ``colour_match``."""
        stages = self._as_source(params.get("stages", self.stages))
        ids = stages.ids() if stages is not None else []
        if not ids:
            raise GenerationFailed("no stage images are configured for paste-on-stage")
        if num_candidates < 1:
            raise GenerationFailed("num_candidates must be at least 1")
        t_all = time.perf_counter()
        cut, t_cut = _product_cutout(product, self.segmenter)
        rng = np.random.default_rng(seed)
        order = list(rng.permutation(len(ids)))
        while len(order) < num_candidates:
            order += list(rng.permutation(len(ids)))
        out = []
        for rank in range(num_candidates):
            stage_id = ids[order[rank]]
            layers, meta = paste_on_stage(
                cut,
                stages.get(stage_id),
                size=int(params.get("size", self.size)),
                height_fraction=float(params.get("height_fraction", 0.42)),
                ground=float(params.get("ground", 0.86)),
                x_centre=float(0.5 + rng.uniform(-0.12, 0.12)),
                colour_match=bool(params.get("colour_match", True)),
                shadow_opacity=float(params.get("shadow_opacity", 0.5)),
            )
            meta.update(
                {
                    "backend": self.name,
                    "backend_version": self.version,
                    "seed": int(seed),
                    "rank": rank,
                    "source_id": stage_id,
                    "segmenter": cut.segmenter,
                }
            )
            meta["timings"].update({"cutout_s": round(t_cut, 4), "request_total_s": round(time.perf_counter() - t_all, 4)})
            out.append(StagedCandidate(layers.image, meta, layers.product_alpha, layers))
        return out
