"""Set-up shared by the generation benchmarks (`generation_quality.py`, `generation_staging.py`):
one thread per numeric library (the "one core" figures), the repository on ``sys.path``, the data
root and its manifest, and a catalog of staged photos segmented by the shared segmenter.

Import it before numpy/torch: the thread settings only hold if they are set first.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path("/work/shared/data")


def data_root() -> Path:
    return SHARED if (SHARED / "manifest.jsonl").is_file() else REPO / "sample_data"


def manifest(kind: str) -> list[dict]:
    """The manifest rows of one ``kind``, each with ``path`` (absolute) added."""
    root = data_root()
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line.strip()]
    return [dict(r, path=str(root / r["file"])) for r in rows if r["kind"] == kind]


def segmented_catalog(rows: list[dict], segmenter, size: int | None = None):
    """(`InMemoryCatalogSource`, [`CatalogPhoto`]) of staged manifest rows, id = the row's file;
    photos resized to ``size`` px on the long side first when given."""
    import cv2

    from core.ml.images import load_rgb
    from core.ml.segmentation import segment_product
    from generation.ml.copy_paste import InMemoryCatalogSource
    from generation.ml.retrieval import CatalogPhoto

    source, photos = InMemoryCatalogSource(), []
    for r in rows:
        rgb = load_rgb(r["path"])
        if size is not None:
            f = size / max(rgb.shape[:2])
            rgb = cv2.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)), interpolation=cv2.INTER_AREA)
        alpha = segment_product(rgb, segmenter).alpha
        source.put(r["file"], rgb, alpha)
        photos.append(CatalogPhoto(r["file"], r["category"], rgb, alpha))
    return source, photos
