"""Catalog index for retrieval-assisted copy-paste staging (Ku et al., AdKDD 2023).

Each catalog entry is a *staged* photo of some product in a scene. We keep, per entry:
the product's embedding (the product cut out of the scene, shown on white, through the shared
image encoder), its category, the product's box in the scene (normalised to [0, 1]) and a small
binary silhouette (``MASK_RES``² bits, inside that box). Vectors live in a faiss ``IndexFlatIP``
(exact cosine on L2-normalised vectors); once the catalog grows past ``IVF_THRESHOLD`` entries
the index switches to ``IndexIVFFlat`` (inner product, ``nlist ≈ 2·√N``, ``nprobe`` lists
searched), which answers top-10 over 100k 1280-d vectors in a few ms instead of ~100 ms on one
core; `bench/generation_retrieval.py` measures its recall against exact search. A category filter
always searches its subset exactly (vectors reconstructed from the index; IDSelector above
``EXACT_SUBSET_LIMIT`` entries).

Ranking (`CatalogIndex.search`): the ``pool`` nearest entries by cosine similarity are re-ranked by

    score = similarity − fit_weight · uncovered_fraction

where ``uncovered_fraction`` is the part of the catalog product's silhouette that the new product
leaves uncovered when placed at the same spot and scale (fit inside the old box, keep aspect,
centred, standing on the old base line) — the area the inpainter has to invent.

A category filter restricts the search to that category; a category with no entries falls back
to all categories and says so in `SearchResult.notice`. An empty index raises `EmptyCatalog`.

Folder layout written by `save` (read by `load`): ``index.faiss``, ``meta.json`` (ids,
categories, boxes, encoder name, format version), ``silhouettes.npy`` (packed bits).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from generation.ml.backends import GenerationFailed

__all__ = [
    "MASK_RES",
    "EmptyCatalog",
    "CatalogHit",
    "SearchResult",
    "CatalogPhoto",
    "CatalogIndex",
    "silhouette_grid",
    "placement_in_box",
    "uncovered_fraction",
    "uncovered_fractions",
    "product_on_white",
    "update_catalog_index",
]

MASK_RES = 32
FORMAT_VERSION = 1
IVF_THRESHOLD = 50_000  # switch from exact flat search to IVF above this many entries
EXACT_SUBSET_LIMIT = 20_000  # category subsets up to this size are searched exactly


class EmptyCatalog(GenerationFailed):
    """The catalog index has no entries, so there is nothing to retrieve."""


@dataclass(frozen=True)
class CatalogHit:
    item_id: str
    category: str
    similarity: float  # cosine similarity of embeddings
    uncovered_fraction: float  # of the catalog silhouette left uncovered by the new product (0..1)
    score: float  # similarity - fit_weight * uncovered_fraction
    box: tuple[float, float, float, float]  # catalog product box in its scene, normalised (x0, y0, x1, y1)

    def to_dict(self) -> dict:
        return {
            "item_id": self.item_id,
            "category": self.category,
            "similarity": round(self.similarity, 6),
            "uncovered_fraction": None if self.uncovered_fraction != self.uncovered_fraction else round(self.uncovered_fraction, 6),
            "score": round(self.score, 6),
            "box": [round(v, 6) for v in self.box],
        }


@dataclass
class SearchResult:
    hits: list[CatalogHit]
    notice: str = ""  # e.g. "no catalog photos in category 'x'; searched all categories"
    searched_categories: str = "all"  # the category searched, or "all"
    seconds: float = 0.0


@dataclass
class CatalogPhoto:
    """One staged catalog photo to index; ``alpha`` (H x W float in [0, 1]) skips segmentation."""

    item_id: str
    category: str
    rgb: np.ndarray
    alpha: np.ndarray | None = None


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def silhouette_grid(mask: np.ndarray, res: int = MASK_RES) -> np.ndarray:
    """The mask inside its own bounding box, resampled to ``res`` x ``res`` bool."""
    box = _box_of(mask)
    if box is None:
        return np.zeros((res, res), bool)
    x0, y0, x1, y1 = box
    crop = mask[y0:y1, x0:x1].astype(np.float32)
    return cv2.resize(crop, (res, res), interpolation=cv2.INTER_AREA) >= 0.5


def placement_in_box(src_w: float, src_h: float, box_w: float, box_h: float) -> tuple[float, float, float, float]:
    """Where a ``src_w`` x ``src_h`` product lands in a ``box_w`` x ``box_h`` box: fit inside, keep
    aspect, centred horizontally, standing on the box's bottom. Returns (x0, y0, x1, y1) in box units."""
    s = min(box_w / max(src_w, 1e-9), box_h / max(src_h, 1e-9))
    w, h = src_w * s, src_h * s
    x0 = (box_w - w) / 2.0
    return x0, box_h - h, x0 + w, box_h


def uncovered_fraction(
    old_sil: np.ndarray, old_box_wh: tuple[float, float], new_sil: np.ndarray, new_wh: tuple[float, float]
) -> float:
    """Fraction of the old silhouette (a grid over its box) not covered by the new product placed in
    that box (`placement_in_box`); both silhouettes are grids over their own bounding boxes."""
    res = old_sil.shape[0]
    bw, bh = old_box_wh
    px0, py0, px1, py1 = placement_in_box(new_wh[0], new_wh[1], bw, bh)
    # placement in grid cells of the old box
    gx0, gx1 = px0 / bw * res, px1 / bw * res
    gy0, gy1 = py0 / bh * res, py1 / bh * res
    placed = np.zeros((res, res), bool)
    # cells whose centre lies inside the placed product's box
    ix0, iy0 = int(np.ceil(gx0 - 0.5)), int(np.ceil(gy0 - 0.5))
    ix1, iy1 = int(np.floor(gx1 - 0.5)) + 1, int(np.floor(gy1 - 0.5)) + 1
    ix0, iy0, ix1, iy1 = max(ix0, 0), max(iy0, 0), min(ix1, res), min(iy1, res)
    if ix1 > ix0 and iy1 > iy0:
        # sample the new silhouette at the centres of the covered cells
        xs = ((np.arange(ix0, ix1) + 0.5 - gx0) / max(gx1 - gx0, 1e-9) * new_sil.shape[1]).astype(int)
        ys = ((np.arange(iy0, iy1) + 0.5 - gy0) / max(gy1 - gy0, 1e-9) * new_sil.shape[0]).astype(int)
        xs = np.clip(xs, 0, new_sil.shape[1] - 1)
        ys = np.clip(ys, 0, new_sil.shape[0] - 1)
        placed[iy0:iy1, ix0:ix1] = new_sil[np.ix_(ys, xs)]
    total = old_sil.sum()
    if total == 0:
        return 0.0
    return float((old_sil & ~placed).sum() / total)


def uncovered_fractions(old_sils: np.ndarray, old_aspects: np.ndarray, new_sil: np.ndarray, new_wh: tuple[float, float]) -> np.ndarray:
    """Vectorised `uncovered_fraction` for N old silhouettes (N x res x res bool) whose boxes have
    width/height ``old_aspects`` (N,)."""
    n, res = old_sils.shape[0], old_sils.shape[1]
    if n == 0:
        return np.zeros(0, np.float32)
    nw, nh = float(new_wh[0]), float(new_wh[1])
    aspect = np.asarray(old_aspects, np.float64)  # box is aspect x 1
    s = np.minimum(aspect / nw, 1.0 / nh)
    w, h = nw * s, nh * s
    gx0 = (aspect - w) / 2.0 / aspect * res
    gx1 = gx0 + w / aspect * res
    gy0 = (1.0 - h) * res
    gy1 = np.full(n, float(res))
    centres = np.arange(res) + 0.5
    inx = (centres[None] >= gx0[:, None]) & (centres[None] < gx1[:, None])
    iny = (centres[None] >= gy0[:, None]) & (centres[None] < gy1[:, None])
    xi = np.clip(((centres[None] - gx0[:, None]) / np.maximum(gx1 - gx0, 1e-9)[:, None] * new_sil.shape[1]).astype(int), 0, new_sil.shape[1] - 1)
    yi = np.clip(((centres[None] - gy0[:, None]) / np.maximum(gy1 - gy0, 1e-9)[:, None] * new_sil.shape[0]).astype(int), 0, new_sil.shape[0] - 1)
    placed = new_sil[yi[:, :, None], xi[:, None, :]] & iny[:, :, None] & inx[:, None, :]
    total = old_sils.reshape(n, -1).sum(1)
    left = (old_sils & ~placed).reshape(n, -1).sum(1)
    return np.where(total > 0, left / np.maximum(total, 1), 0.0).astype(np.float32)


def product_on_white(rgb: np.ndarray, alpha: np.ndarray, pad: float = 0.08) -> np.ndarray:
    """The product cropped to its box (+ ``pad``) and composited on white: what we embed, for the
    query product and for catalog products alike, so both sides look alike to the encoder."""
    mask = alpha >= 0.5
    box = _box_of(mask)
    if box is None:
        return np.full((8, 8, 3), 255, np.uint8)
    x0, y0, x1, y1 = box
    p = int(round(pad * max(x1 - x0, y1 - y0)))
    h, w = mask.shape
    x0, y0, x1, y1 = max(0, x0 - p), max(0, y0 - p), min(w, x1 + p), min(h, y1 + p)
    a = np.clip(alpha[y0:y1, x0:x1, None].astype(np.float32), 0, 1)
    out = rgb[y0:y1, x0:x1].astype(np.float32) * a + 255.0 * (1 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


@dataclass
class CatalogIndex:
    """Exact cosine index over catalog products, with categories, boxes and silhouettes."""

    dim: int
    encoder_name: str = ""
    ids: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # normalised x0,y0,x1,y1
    box_aspect: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))  # box w/h in pixels
    silhouettes: np.ndarray = field(default_factory=lambda: np.zeros((0, MASK_RES * MASK_RES // 8), np.uint8))

    def __post_init__(self):
        import faiss

        self._index = faiss.IndexFlatIP(int(self.dim))
        self.nprobe = 16
        self._pos: dict[str, int] = {}
        self._by_category: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ building
    def __len__(self) -> int:
        return len(self.ids)

    def category_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.categories:
            out[c] = out.get(c, 0) + 1
        return out

    def _reindex_categories(self):
        cats = np.asarray(self.categories, dtype=object)
        self._by_category = {c: np.flatnonzero(cats == c).astype(np.int64) for c in set(self.categories)}
        self._pos = {item: i for i, item in enumerate(self.ids)}

    def add(
        self,
        item_ids: Sequence[str],
        categories: Sequence[str],
        vectors: np.ndarray,
        masks: Sequence[np.ndarray],
    ) -> None:
        """Add entries from precomputed L2-normalised vectors (N x dim) and scene-size product masks.
        An id already in the index is replaced."""
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(len(item_ids), -1))
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {vectors.shape[1]}, the index has {self.dim}")
        if not (len(item_ids) == len(categories) == len(masks)):
            raise ValueError("item_ids, categories, vectors and masks must have the same length")
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("duplicate item ids in one add() call")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        boxes, aspects, sils = [], [], []
        for item, m in zip(item_ids, masks):
            m = np.asarray(m)
            m = m >= 0.5 if m.dtype.kind == "f" else m.astype(bool)
            box = _box_of(m)
            if box is None:
                raise GenerationFailed(f"catalog item {item!r}: no product found in the photo (empty mask)")
            h, w = m.shape
            x0, y0, x1, y1 = box
            boxes.append((x0 / w, y0 / h, x1 / w, y1 / h))
            aspects.append((x1 - x0) / (y1 - y0))
            sils.append(np.packbits(silhouette_grid(m).ravel()))
        existing = [i for i in item_ids if i in self._pos]
        if existing:
            self.remove(existing)
        self._index.add(vectors)
        self.ids.extend(str(i) for i in item_ids)
        self.categories.extend(str(c) for c in categories)
        self.boxes = np.concatenate([self.boxes, np.asarray(boxes, np.float32).reshape(-1, 4)])
        self.box_aspect = np.concatenate([self.box_aspect, np.asarray(aspects, np.float32)])
        self.silhouettes = np.concatenate([self.silhouettes, np.asarray(sils, np.uint8).reshape(len(sils), -1)])
        self._reindex_categories()
        if self.kind == "flat" and len(self) > IVF_THRESHOLD:
            self.use_ivf()

    @property
    def kind(self) -> str:
        """``"flat"`` (exact) or ``"ivf"``."""
        import faiss

        return "ivf" if isinstance(faiss.downcast_index(self._index), faiss.IndexIVF) else "flat"

    def vectors(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Stored vectors (all, or at ``positions``), reconstructed from the faiss index."""
        if positions is None:
            positions = np.arange(len(self))
        positions = np.asarray(positions, np.int64)
        if positions.size == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._index.reconstruct_batch(positions)

    def use_ivf(self, nlist: int | None = None, nprobe: int | None = None) -> None:
        """Rebuild the index as ``IndexIVFFlat`` (trained on the current vectors)."""
        import faiss

        x = np.ascontiguousarray(self.vectors())
        nlist = int(nlist or max(16, min(4096, round(2 * np.sqrt(len(x))))))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = x if len(x) <= 40 * nlist else x[rng.choice(len(x), 40 * nlist, replace=False)]
        ivf.train(sample)
        ivf.add(x)
        ivf.make_direct_map()
        ivf.nprobe = int(nprobe or self.nprobe)
        self.nprobe = ivf.nprobe
        self._quantizer = quantizer  # keep the Python object alive with the index
        self._index = ivf

    def remove(self, item_ids: Iterable[str]) -> int:
        """Remove entries by id; returns how many were removed (unknown ids are ignored)."""
        import faiss

        pos = sorted(self._pos[i] for i in set(item_ids) if i in self._pos)
        if not pos:
            return 0
        keep = np.setdiff1d(np.arange(len(self.ids)), pos)
        if self.kind == "flat":
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(pos, np.int64)))  # renumbers
        else:  # IVF keeps labels: re-add the kept vectors with positions 0..n-1 (no retraining)
            kept = np.ascontiguousarray(self.vectors(keep))
            self._index.reset()
            self._index.add(kept)
            self._index.make_direct_map()
        self.ids = [self.ids[i] for i in keep]
        self.categories = [self.categories[i] for i in keep]
        self.boxes, self.box_aspect, self.silhouettes = self.boxes[keep], self.box_aspect[keep], self.silhouettes[keep]
        self._reindex_categories()
        return len(pos)

    def add_photos(self, photos: Iterable[CatalogPhoto], *, encoder, segmenter=None, batch_size: int = 16) -> list[str]:
        """Segment (unless an alpha is given) and embed staged catalog photos, then add them.
        Each photo's ``alpha`` is set to the mask used (store it for the `CatalogSource`).
        Returns messages for photos skipped because no product was found."""
        from core.ml.segmentation import segment_product

        skipped: list[str] = []
        batch: list[tuple[CatalogPhoto, np.ndarray]] = []

        def flush():
            if not batch:
                return
            crops = [product_on_white(p.rgb, a) for p, a in batch]
            vecs = encoder.encode(crops, batch_size=batch_size)
            self.add([p.item_id for p, _ in batch], [p.category for p, _ in batch], vecs, [a >= 0.5 for _, a in batch])
            batch.clear()

        for photo in photos:
            if photo.alpha is None:
                # kept on the photo: the caller stores it for its CatalogSource (scene + alpha)
                photo.alpha = segment_product(photo.rgb, segmenter=segmenter).alpha
            alpha = photo.alpha
            if (alpha >= 0.5).sum() < 16:
                skipped.append(f"{photo.item_id}: no product found in the photo; not indexed")
                continue
            batch.append((photo, alpha))
            if len(batch) >= batch_size:
                flush()
        flush()
        return skipped

    @classmethod
    def build(cls, photos: Iterable[CatalogPhoto], *, encoder=None, segmenter=None, batch_size: int = 16) -> "CatalogIndex":
        """A new index from staged catalog photos (default encoder: `core.ml.embeddings.default_image_encoder`)."""
        if encoder is None:
            from core.ml.embeddings import default_image_encoder

            encoder = default_image_encoder()
        index = cls(dim=int(encoder.dim), encoder_name=str(encoder.name))
        index.build_notes = index.add_photos(photos, encoder=encoder, segmenter=segmenter, batch_size=batch_size)
        return index

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index to ``folder`` (created if needed); each file is replaced atomically."""
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "encoder_name": self.encoder_name,
            "mask_res": MASK_RES,
            "ids": self.ids,
            "categories": self.categories,
            "boxes": self.boxes.round(6).tolist(),
            "box_aspect": self.box_aspect.round(6).tolist(),
        }

        def atomic(name: str, write):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
            os.close(fd)
            try:
                write(tmp)
                os.replace(tmp, folder / name)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

        atomic("index.faiss", lambda p: faiss.write_index(self._index, p))

        def write_sil(p):
            with open(p, "wb") as fh:
                np.save(fh, self.silhouettes)

        atomic("silhouettes.npy", write_sil)

        def write_meta(p):
            with open(p, "w") as fh:
                json.dump(meta, fh)

        atomic("meta.json", write_meta)  # last: a reader sees a complete set once meta.json is new
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, *, mmap: bool = False) -> "CatalogIndex":
        import faiss

        folder = Path(folder)
        if not (folder / "meta.json").is_file():
            raise EmptyCatalog(f"no catalog index in {folder} (meta.json missing); build the catalog index first")
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION or meta.get("mask_res") != MASK_RES:
            raise ValueError(f"catalog index in {folder} has an unsupported format; rebuild it")
        index = cls(dim=int(meta["dim"]), encoder_name=meta.get("encoder_name", ""))
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index._index = faiss.read_index(str(folder / "index.faiss"), flags)
        if index.kind == "ivf":
            ivf = faiss.extract_index_ivf(index._index)
            index.nprobe = int(ivf.nprobe)
            if ivf.direct_map.type == faiss.DirectMap.NoMap:
                ivf.make_direct_map()
        index.ids = list(meta["ids"])
        index.categories = list(meta["categories"])
        index.boxes = np.asarray(meta["boxes"], np.float32).reshape(-1, 4)
        index.box_aspect = np.asarray(meta["box_aspect"], np.float32)
        index.silhouettes = np.load(folder / "silhouettes.npy")
        if not (index._index.ntotal == len(index.ids) == len(index.categories) == len(index.silhouettes)):
            raise ValueError(f"catalog index in {folder} is inconsistent (vectors, ids and masks differ in count)")
        index._reindex_categories()
        return index

    # ------------------------------------------------------------------ search
    def search(
        self,
        query_vec: np.ndarray,
        k: int = 10,
        category: str | None = None,
        *,
        query_mask: np.ndarray | None = None,
        fit_weight: float = 0.5,
        pool: int | None = None,
        exclude: Iterable[str] = (),
    ) -> SearchResult:
        """Top-``k`` catalog entries for a query embedding.

        ``query_mask``: the new product's mask (any size; only its silhouette inside its box is
        used). With it, the ``pool`` (default ``max(5k, 50)``) nearest by cosine are re-ranked by
        ``similarity − fit_weight · uncovered_fraction``; without it, by similarity only.
        """
        import faiss

        t0 = time.perf_counter()
        if len(self) == 0:
            raise EmptyCatalog("the catalog index is empty: add staged catalog photos before generating")
        q = np.asarray(query_vec, np.float32).reshape(1, -1)
        if q.shape[1] != self.dim:
            raise ValueError(f"query has dimension {q.shape[1]}, the index has {self.dim} ({self.encoder_name})")
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        notice, searched = "", "all"
        subset = None
        if category is not None:
            subset = self._by_category.get(category)
            if subset is None or subset.size == 0:
                known = ", ".join(sorted(self._by_category)) or "none"
                notice = f"no catalog photos in category {category!r}; searched all categories (known: {known})"
            else:
                searched = category
        excluded = {self._pos[i] for i in exclude if i in self._pos}
        n_avail = len(self) if subset is None else subset.size
        want = k if query_mask is None else max(pool or max(5 * k, 50), k)
        want = min(want + len(excluded), n_avail)
        if subset is None:
            if self.kind == "ivf":
                faiss.extract_index_ivf(self._index).nprobe = self.nprobe
            sims, pos = self._index.search(q, want)
            sims, pos = sims[0], pos[0]
        elif subset.size <= EXACT_SUBSET_LIMIT:  # exact over the category's vectors
            s_all = self.vectors(subset) @ q[0]
            top = np.argsort(-s_all, kind="stable")[:want]
            sims, pos = s_all[top].astype(np.float32), subset[top]
        else:
            params = (
                faiss.SearchParametersIVF(sel=faiss.IDSelectorBatch(subset), nprobe=self.nprobe)
                if self.kind == "ivf"
                else faiss.SearchParameters(sel=faiss.IDSelectorBatch(subset))
            )
            sims, pos = self._index.search(q, want, params=params)
            sims, pos = sims[0], pos[0]
        ok = pos >= 0
        sims, pos = sims[ok], pos[ok]
        if excluded:
            keep = np.array([p not in excluded for p in pos], bool)
            sims, pos = sims[keep], pos[keep]
        if query_mask is not None:
            qm = np.asarray(query_mask)
            qm = qm >= 0.5 if qm.dtype.kind == "f" else qm.astype(bool)
            qbox = _box_of(qm)
            if qbox is None:
                raise GenerationFailed("the product mask is empty; cannot rank catalog scenes by silhouette fit")
            qsil = silhouette_grid(qm)
            qwh = (qbox[2] - qbox[0], qbox[3] - qbox[1])
            sils = np.unpackbits(self.silhouettes[pos], axis=1)[:, : MASK_RES * MASK_RES].reshape(-1, MASK_RES, MASK_RES).astype(bool)
            unc = uncovered_fractions(sils, self.box_aspect[pos], qsil, qwh)
        else:
            unc = np.full(len(pos), np.nan, np.float32)
        score = sims - fit_weight * np.nan_to_num(unc, nan=0.0)
        order = np.argsort(-score, kind="stable")[:k]
        hits = [
            CatalogHit(
                self.ids[pos[i]],
                self.categories[pos[i]],
                float(sims[i]),
                float(unc[i]) if not np.isnan(unc[i]) else float("nan"),
                float(score[i]),
                tuple(float(v) for v in self.boxes[pos[i]]),
            )
            for i in order
        ]
        return SearchResult(hits, notice, searched, time.perf_counter() - t0)


def update_catalog_index(
    folder: str | os.PathLike,
    add: Iterable[CatalogPhoto] = (),
    *,
    remove: Iterable[str] = (),
    encoder=None,
    segmenter=None,
    batch_size: int = 16,
) -> tuple["CatalogIndex", list[str]]:
    """Create or update the index stored in ``folder``: remove ids, add (or replace) photos, save.

    Holds an exclusive lock on ``folder/.lock`` for the whole update, so concurrent workers
    serialise instead of losing each other's changes. Returns the index and messages about
    photos that were skipped (no product found).
    """
    import fcntl

    if encoder is None:
        from core.ml.embeddings import default_image_encoder

        encoder = default_image_encoder()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (folder / "meta.json").is_file():
                index = CatalogIndex.load(folder)
                if index.encoder_name and index.encoder_name != getattr(encoder, "name", index.encoder_name):
                    raise ValueError(
                        f"the index in {folder} was built with {index.encoder_name!r}, not {encoder.name!r}; rebuild it"
                    )
            else:
                index = CatalogIndex(dim=int(encoder.dim), encoder_name=str(encoder.name))
            index.remove(list(remove))
            skipped = index.add_photos(add, encoder=encoder, segmenter=segmenter, batch_size=batch_size)
            index.save(folder)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return index, skipped
