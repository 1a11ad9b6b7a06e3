"""Generation on the Django side: the catalog index, running generator backends for products, jobs.

Everything that writes lives here; views, Celery tasks and management commands only call these
functions. The generator backends themselves (`generation/ml/`) are plain Python and know nothing
of Django: this module hands them Django-provided resources (the project's catalog index, a
catalog source reading Django storage, the project's stages, model paths from settings).

Guarantees users rely on:

* `generate_for_product` is idempotent: the same product, backend, backend version, params and
  seed give the same `Generation` rows (params are identified by the sha256 of their canonical
  JSON); a re-run (e.g. a Celery task re-delivered after a worker was killed) reuses them.
* All candidates are computed first; the files are stored (content-addressed, so a retry stores
  nothing twice); then every `Generation` row of the run is written in one transaction. A failure
  never leaves a half-written `Generation`.
* Bad input (photo not on a plain background, no product found, product larger than the scene,
  empty catalog, ...) raises `GenerationFailed` with a message for the user; jobs write it to
  their log.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.ml.images import ImageRejected, decode_image, sha256_of
from core.models import CatalogImage, ModelVersion, Product, Project, TrainingRun
from core.services.storage import content_name, save_bytes, store_pixels
from generation.ml.backends import (
    BackendUnavailable,
    GenerationFailed,
    GeneratorBackend,
    ProductInput,
    backend_names,
    get_backend_class,
)
from generation.models import Generation, GenerationJob

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

DEFAULT_BACKEND = "copy-paste"
MAX_CANDIDATES = 8
# Backends whose candidates carry staged layers (clean plate + product layer) for the parallax loop.
PARALLAX_BACKENDS = ("copy-paste", "paste-on-stage")
# Errors that are the input's fault (or a missing resource): shown to the user, never a crash.
USER_ERRORS = (GenerationFailed, BackendUnavailable, ImageRejected)


def _noop(fraction: float, message: str) -> None:
    pass


# ---------------------------------------------------------------------------- settings
def _setting(name: str, default):
    return getattr(settings, name, default)


def artifact_dir(project: Project) -> Path:
    return Path(_setting("STAGECRAFT_ARTIFACT_DIR", Path(settings.DATA_DIR) / "artifacts")) / f"project-{project.pk}"


def catalog_index_dir(project: Project) -> Path:
    return artifact_dir(project) / "catalog-index"


def wbl_inpainter_dir(project: Project) -> Path:
    """Versions of the project's trained WBL inpainter (`train_inpainter`), one folder each."""
    return artifact_dir(project) / "wbl-inpainter"


def params_hash(params: dict | None) -> str:
    """sha256 of the canonical JSON of ``params`` (sorted keys, no whitespace)."""
    canonical = json.dumps(params or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------- storage helpers
def read_rgb(name: str, what: str = "image") -> np.ndarray:
    """An image in Django storage as H x W x 3 uint8 RGB."""
    with default_storage.open(name, "rb") as fh:
        data = fh.read()
    return decode_image(data, name=what, max_bytes=max(len(data), 1),
                        max_pixels=_setting("STAGECRAFT_MAX_IMAGE_PIXELS", 40_000_000)).pixels


def read_alpha(name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A stored mask PNG as H x W float32 alpha in [0, 1] (resized to ``shape`` if given)."""
    with default_storage.open(name, "rb") as fh:
        data = fh.read()
    from PIL import Image
    import io

    with Image.open(io.BytesIO(data)) as img:
        a = np.asarray(img.convert("L"), np.float32) / 255.0
    if shape is not None and a.shape != tuple(shape):
        a = cv2.resize(a, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return a


def _alpha_png(alpha: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(alpha, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def store_bytes(data: bytes, extension: str, folder: str) -> str:
    """Store non-image bytes (videos) under their content address; returns the storage name."""
    return save_bytes(data, content_name(sha256_of(data), extension, folder))


# ---------------------------------------------------------------------------- catalog access
class StorageCatalogSource:
    """`copy_paste.CatalogSource` over the project's staged `CatalogImage` rows (id = pk as text):
    the scene from storage, the product alpha from the stored mask (segmented on the fly if the
    index was built before the mask was stored)."""

    def __init__(self, project: Project):
        self.project = project

    def get(self, item_id: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            item = CatalogImage.objects.get(pk=int(item_id), project=self.project)
        except (CatalogImage.DoesNotExist, ValueError):
            raise KeyError(item_id)
        rgb = read_rgb(item.image.name, f"catalog photo {item.pk}")
        if item.mask:
            alpha = read_alpha(item.mask.name, rgb.shape[:2])
        else:
            from core.ml.segmentation import segment_product

            alpha = segment_product(rgb).alpha
        return rgb, alpha


class StorageStageSource:
    """`copy_paste.StageSource` over the project's empty stages (`CatalogImage(kind="stage")`)."""

    def __init__(self, project: Project):
        self.project = project

    def ids(self) -> list[str]:
        return [str(pk) for pk in CatalogImage.objects.filter(project=self.project, kind="stage")
                .order_by("id").values_list("pk", flat=True)]

    def get(self, stage_id: str) -> np.ndarray:
        try:
            item = CatalogImage.objects.get(pk=int(stage_id), project=self.project, kind="stage")
        except (CatalogImage.DoesNotExist, ValueError):
            raise KeyError(stage_id)
        return read_rgb(item.image.name, f"stage {item.pk}")


# ---------------------------------------------------------------------------- catalog index
@dataclass
class IndexReport:
    indexed: int = 0
    segmented: int = 0  # masks computed (and stored) by this build
    embedded: int = 0  # embeddings computed by this build (the rest were reused from the database)
    skipped: list[str] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    path: str = ""

    def as_dict(self) -> dict:
        return {"indexed": self.indexed, "segmented": self.segmented, "embedded": self.embedded,
                "skipped": self.skipped, "categories": self.categories, "seconds": round(self.seconds, 2),
                "path": self.path}

    def summary(self) -> str:
        cats = ", ".join(f"{c or 'no category'}: {n}" for c, n in sorted(self.categories.items())) or "none"
        return (f"indexed {self.indexed} staged catalog photos ({cats}); {self.segmented} segmented, "
                f"{self.embedded} embedded, {len(self.skipped)} skipped, {self.seconds:.1f} s")


def _segment_small(rgb: np.ndarray, side: int) -> np.ndarray:
    """Segment at most ``side`` px on the long side (U2-Net runs at 320 px anyway; the refinement is
    what costs), then bring the alpha back to the photo's size."""
    from core.ml.segmentation import segment_product

    h, w = rgb.shape[:2]
    s = side / max(h, w)
    if s < 1:
        small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        alpha = segment_product(small).alpha
        return cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    return segment_product(rgb).alpha


def build_catalog_index(project: Project, progress: Progress | None = None, *, segment_side: int | None = None,
                        encoder=None) -> IndexReport:
    """(Re)build the project's catalog index from its staged `CatalogImage` rows.

    Each photo is segmented once (the mask PNG is stored in `CatalogImage.mask`) and embedded once
    (the vector is kept in `CatalogImage.embedding`, keyed by the encoder's name); later builds
    reuse both, so adding photos only costs the new ones. The index is written to
    ``STAGECRAFT_ARTIFACT_DIR/project-<id>/catalog-index`` (files replaced atomically), with a
    ``build-report.json`` beside it. Photos where no product is found are skipped and reported.
    Raises `GenerationFailed` when the project has no usable staged photo.
    """
    from generation.ml.retrieval import CatalogIndex, product_on_white

    progress = progress or _noop
    t0 = time.perf_counter()
    side = int(segment_side or _setting("STAGECRAFT_CATALOG_SEGMENT_SIDE", 512))
    if encoder is None:
        from core.ml.embeddings import default_image_encoder

        encoder = default_image_encoder()
    report = IndexReport()
    items = list(CatalogImage.objects.filter(project=project, kind="staged").order_by("id"))
    if not items:
        raise GenerationFailed(f"project {project.name!r} has no staged catalog photos: import staged photos "
                               "(kind 'staged') before building the catalog index")
    ids, cats, vecs, masks = [], [], [], []
    to_embed: list[tuple[CatalogImage, np.ndarray, np.ndarray]] = []

    def flush():
        if not to_embed:
            return
        crops = [product_on_white(rgb, alpha) for _, rgb, alpha in to_embed]
        out = np.asarray(encoder.encode(crops, batch_size=16), np.float32)
        for (item, _, alpha), vec in zip(to_embed, out):
            item.embedding = vec.astype(np.float32).tobytes()
            item.embedding_model = str(encoder.name)
            item.save(update_fields=["embedding", "embedding_model"])
            ids.append(str(item.pk))
            cats.append(item.category or "")
            vecs.append(vec)
            masks.append(alpha >= 0.5)
            report.embedded += 1
        to_embed.clear()

    for n, item in enumerate(items):
        progress(0.9 * n / len(items), f"catalog photo {n + 1}/{len(items)}")
        try:
            rgb = read_rgb(item.image.name, f"catalog photo {item.pk}")
        except (ImageRejected, OSError) as exc:
            report.skipped.append(f"catalog photo {item.pk}: cannot be read ({exc})")
            continue
        if item.mask:
            alpha = read_alpha(item.mask.name, rgb.shape[:2])
        else:
            alpha = _segment_small(rgb, side)
            report.segmented += 1
            if (alpha >= 0.5).sum() >= 16:
                item.mask = store_pixels(_alpha_png(alpha), folder="masks").name
                item.save(update_fields=["mask"])
        if (alpha >= 0.5).sum() < 16:
            report.skipped.append(f"catalog photo {item.pk} ({item.source or item.image.name}): no product found; "
                                  "not indexed")
            continue
        cached = bytes(item.embedding) if item.embedding else b""
        if cached and item.embedding_model == encoder.name and len(cached) == 4 * int(encoder.dim):
            ids.append(str(item.pk))
            cats.append(item.category or "")
            vecs.append(np.frombuffer(cached, np.float32))
            masks.append(alpha >= 0.5)
        else:
            to_embed.append((item, rgb, alpha))
            if len(to_embed) >= 16:
                flush()
    flush()
    if not ids:
        raise GenerationFailed(f"none of the {len(items)} staged catalog photos of {project.name!r} shows a product "
                               "the segmenter can find; the catalog index was not built")
    progress(0.95, "writing the index")
    index = CatalogIndex(dim=int(encoder.dim), encoder_name=str(encoder.name))
    index.add(ids, cats, np.stack(vecs), masks)
    folder = catalog_index_dir(project)
    report.indexed = len(index)
    report.categories = index.category_counts()
    report.path = str(folder)
    with _index_lock(folder, exclusive=True):  # readers never see a mix of two builds' files
        index.save(folder)
        report.seconds = time.perf_counter() - t0
        info = report.as_dict() | {"built_at": timezone.now().isoformat(), "encoder": encoder.name}
        (folder / "build-report.json").write_text(json.dumps(info, indent=1))
    progress(1.0, report.summary())
    return report


class _index_lock:
    """flock on ``<index folder>/.lock`` (the same file `retrieval.update_catalog_index` locks)."""

    def __init__(self, folder: Path, exclusive: bool):
        self.folder, self.exclusive = Path(folder), exclusive

    def __enter__(self):
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.folder / ".lock", "a")
        fcntl.flock(self.fh, fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def load_catalog_index(project: Project):
    """The project's saved index (cached per process until it is rebuilt); raises `EmptyCatalog`
    (a `GenerationFailed`) when none was built."""
    from generation.ml.copy_paste import load_index_cached
    from generation.ml.retrieval import EmptyCatalog

    folder = catalog_index_dir(project)
    if not (folder / "meta.json").is_file():
        raise EmptyCatalog(f"no catalog index for project {project.name!r}: build the catalog index first")
    with _index_lock(folder, exclusive=False):
        return load_index_cached(folder)


# ---------------------------------------------------------------------------- backends
def build_backend(name: str, project: Project) -> GeneratorBackend:
    """The backend ``name`` wired to the project's resources (raises `BackendUnavailable` for an
    unknown name; check ``availability()`` before generating)."""
    cls = get_backend_class(name)
    models_cfg = _setting("STAGECRAFT_MODELS", {}) or {}
    if name == "copy-paste":
        from generation.ml.retrieval import EmptyCatalog

        try:
            index = load_catalog_index(project)
        except EmptyCatalog:
            index = None
        return cls(index, StorageCatalogSource(project), wbl_model=wbl_inpainter_dir(project))
    if name == "paste-on-stage":
        return cls(StorageStageSource(project))
    if name in ("category-diffusion", "reference-diffusion"):
        return cls(models_cfg.get("sd_inpaint") or None, controlnet=models_cfg.get("controlnet") or None,
                   ip_adapter=models_cfg.get("ip_adapter") or None)
    if name == "pix2pix-baseline":
        return cls(_setting("STAGECRAFT_PIX2PIX_MODEL", None) or None)
    return cls()


def backend_availability(project: Project) -> list[dict]:
    """Every registered backend with its version and whether it can run for this project (and why not)."""
    out = []
    for name in backend_names():
        cls = get_backend_class(name)
        try:
            ok, reason = build_backend(name, project).availability()
        except Exception as exc:  # a misconfigured backend must not break the page
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        out.append({"name": name, "version": getattr(cls, "version", ""), "available": ok, "reason": reason})
    return out


def inpainter_options(project: Project) -> list[dict]:
    """The inpainters copy-paste can use for this project: ``{name, available, reason, version}``
    (``wbl`` is available once `train_inpainter` has saved a model; version = the newest)."""
    from generation.ml.inpaint import INPAINTER_NAMES
    from generation.ml.wbl_inpainter import find_artifact

    out = []
    for name in INPAINTER_NAMES:
        info = {"name": name, "available": True, "reason": "", "version": ""}
        if name == "wbl":
            try:
                info["version"] = find_artifact(wbl_inpainter_dir(project)).name
            except FileNotFoundError:
                info.update(available=False, reason=f"no WBL inpainter trained for project {project.name!r}: "
                                                    f"run manage.py train_inpainter --project {project.slug!r} first")
        out.append(info)
    return out


def with_inpainter(params: dict | None, backends: Iterable[str], inpainter: str | None) -> dict:
    """``params`` with copy-paste's ``inpainter`` set (the form's and the command's choice); ``auto``
    or None leaves the params as they are, so earlier runs keep their params hash."""
    from generation.ml.inpaint import INPAINTER_NAMES

    params = dict(params or {})
    if not inpainter or inpainter == "auto":
        return params
    if inpainter not in INPAINTER_NAMES:
        raise GenerationFailed(f"unknown inpainter {inpainter!r}; choose one of {', '.join(INPAINTER_NAMES)}")
    if any(b != "copy-paste" for b in backends):
        raise GenerationFailed("the inpainter choice is for the copy-paste backend only")
    if params.get("inpainter", inpainter) != inpainter:
        raise GenerationFailed(f"params already set the inpainter to {params['inpainter']!r}")
    return {**params, "inpainter": inpainter}


def _pin_wbl_version(backend_name: str, project: Project, params: dict) -> dict:
    """``inpainter="wbl"`` without a version means the newest trained model: pin its version in the
    params, so the params hash follows the model used (a newly trained model makes new rows instead
    of reusing the old model's)."""
    if backend_name != "copy-paste" or params.get("inpainter") != "wbl" or params.get("wbl_version"):
        return params
    wbl = next(o for o in inpainter_options(project) if o["name"] == "wbl")
    if not wbl["available"]:
        raise BackendUnavailable(wbl["reason"])
    return {**params, "wbl_version": wbl["version"]}


def _extra_backend_params(name: str, project: Project, params: dict, progress: Progress | None = None) -> dict:
    """Params the backend needs as objects, derived from JSON params (not part of the hash)."""
    extra: dict[str, Any] = {}
    if name in ("category-diffusion", "reference-diffusion") and progress is not None:
        extra["progress_callback"] = lambda fraction, message: progress(0.1 + 0.5 * fraction, message)
    if name == "reference-diffusion" and "reference_catalog_id" in params and "reference_image" not in params:
        try:
            ref = CatalogImage.objects.get(pk=int(params["reference_catalog_id"]), project=project)
        except (CatalogImage.DoesNotExist, ValueError, TypeError):
            raise GenerationFailed(f"reference_catalog_id {params['reference_catalog_id']!r} is not a catalog "
                                   "photo of this project")
        extra["reference_image"] = read_rgb(ref.image.name, f"catalog photo {ref.pk}")
    return extra


# ---------------------------------------------------------------------------- generation
@dataclass
class GenerateResult:
    generations: list[Generation]
    created: int = 0
    reused: int = 0
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _product_input(product: Product) -> ProductInput:
    source = product.source_image
    if source is None:
        raise GenerationFailed(f"product {product.title!r} has no photo; upload one on a plain background first")
    rgb = read_rgb(source.image.name, f"photo of {product.title}")
    mask = read_alpha(source.mask.name, rgb.shape[:2]) if source.mask else None
    return ProductInput(image=rgb, category=product.category, title=product.title, mask=mask)


def _json_safe(value):
    """Metadata must be JSON: numpy scalars/arrays become Python values, the rest text."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"<array {value.shape}>"
    if isinstance(value, float) and value != value:
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _catalog_pk(source_id) -> int | None:
    try:
        return int(source_id)
    except (TypeError, ValueError):
        return None


def _existing(product, backend_name, version, phash, seed, num_candidates):
    return list(Generation.objects.filter(
        product=product, backend=backend_name, backend_version=version, params_hash=phash, seed=seed,
        candidate_index__lt=num_candidates).order_by("candidate_index"))


def render_and_store_parallax(candidate, *, size: int = 512) -> dict:
    """3 s, 24 fps parallax loop of a staged candidate as MP4 + animated WebP in storage."""
    from generation.ml.parallax import render_parallax

    t = time.perf_counter()
    result = render_parallax(candidate, seconds=3.0, fps=24, size=size, formats=("mp4", "webp"))
    files = {fmt: store_bytes(data, fmt, "videos") for fmt, data in result.files.items()}
    return {**files, "frames": result.frames, "fps": result.fps, "size": result.size, "seconds": 3.0,
            "timings": result.timings, "total_s": round(time.perf_counter() - t, 3)}


def generate_for_product(
    product: Product,
    backend_name: str = DEFAULT_BACKEND,
    *,
    seed: int = 0,
    num_candidates: int = 3,
    params: dict | None = None,
    with_parallax: bool = True,
    parallax_size: int | None = None,
    progress: Progress | None = None,
) -> GenerateResult:
    """Stage ``product`` with a backend; returns its ``num_candidates`` `Generation` rows.

    Idempotent: rows already written for this product/backend/version/params/seed are returned
    as they are. Raises `GenerationFailed` / `BackendUnavailable` / `ImageRejected` with a message
    for the user; nothing is written to the database then.
    """
    progress = progress or _noop
    t0 = time.perf_counter()
    cls = get_backend_class(backend_name)
    params = _pin_wbl_version(cls.name, product.project, dict(params or {}))
    try:
        phash = params_hash(params)
    except (TypeError, ValueError) as exc:
        raise GenerationFailed(f"params must be a JSON object of plain values: {exc}")
    reserved = sorted(set(params) & {"seed", "num_candidates", "progress_callback", "index", "source", "stages"})
    if reserved:
        raise GenerationFailed(f"params may not set {', '.join(reserved)}")
    if not 1 <= int(num_candidates) <= MAX_CANDIDATES:
        raise GenerationFailed(f"the number of candidates must be between 1 and {MAX_CANDIDATES}")
    num_candidates, seed = int(num_candidates), int(seed)
    version = cls.version
    existing = _existing(product, cls.name, version, phash, seed, num_candidates)
    if len(existing) == num_candidates:
        progress(1.0, f"{cls.name}: {num_candidates} candidates already generated; reused")
        return GenerateResult(existing, reused=len(existing), seconds=time.perf_counter() - t0)

    backend = build_backend(cls.name, product.project)
    ok, reason = backend.availability()
    if not ok:
        raise BackendUnavailable(f"{cls.name} is unavailable: {reason}")
    product_input = _product_input(product)
    progress(0.1, f"{cls.name}: generating {num_candidates} candidates")
    t = time.perf_counter()
    try:
        candidates = backend.generate(product_input, seed=seed, num_candidates=num_candidates,
                                      **params, **_extra_backend_params(cls.name, product.project, params, progress))
    except (TypeError, ValueError) as exc:
        if not params:
            raise
        raise GenerationFailed(f"{cls.name} cannot use the params {json.dumps(params, sort_keys=True)}: {exc}")
    gen_s = time.perf_counter() - t
    if len(candidates) < num_candidates:
        raise GenerationFailed(f"{cls.name} returned {len(candidates)} candidates, {num_candidates} were asked for")
    candidates = candidates[:num_candidates]

    notices: list[str] = []
    for c in candidates:
        notice = c.metadata.get("notice")
        if notice and notice not in notices:
            notices.append(notice)
    skipped = candidates[0].metadata.get("skipped_sources") or []
    if skipped:
        notices.append(f"skipped {len(skipped)} retrieved scene(s): " + "; ".join(skipped))

    parallax = None
    have = {g.candidate_index for g in existing}
    if with_parallax and cls.name in PARALLAX_BACKENDS and getattr(candidates[0], "layers", None) is not None \
            and 0 not in have:
        progress(0.6, f"{cls.name}: rendering the parallax video")
        try:
            parallax = render_and_store_parallax(
                candidates[0], size=int(parallax_size or _setting("STAGECRAFT_PARALLAX_SIZE", 512)))
        except Exception as exc:  # the stills are still worth keeping; say why the video is missing
            logger.exception("parallax failed for product %s", product.pk)
            notices.append(f"the parallax video could not be rendered: {exc}")

    progress(0.85, f"{cls.name}: storing images")
    rows: list[Generation] = []
    for i, c in enumerate(candidates):
        if i in have:
            continue
        img = np.ascontiguousarray(np.asarray(c.image)[..., :3]).astype(np.uint8)
        stored = store_pixels(img, folder="images")
        mask_name = ""
        if c.product_mask is not None:
            mask_name = store_pixels(_alpha_png(c.product_mask), folder="masks").name
        meta = dict(c.metadata)
        meta.pop("skipped_sources", None)
        source_pk = _catalog_pk(meta.get("source_id"))
        meta = {
            **meta,
            "retrieval_source": source_pk,
            "source_kind": "stage" if cls.name == "paste-on-stage" else ("catalog" if source_pk else None),
            "notices": notices,
            "generate_s": round(gen_s, 3),
        }
        if i == 0 and parallax is not None:
            meta["parallax"] = parallax
        rows.append(Generation(
            product=product, backend=cls.name, backend_version=version, params=params, params_hash=phash, seed=seed,
            candidate_index=i, status=Generation.Status.SUCCEEDED, image=stored.name, sha256=stored.decoded.sha256,
            width=stored.decoded.width, height=stored.decoded.height, product_mask=mask_name,
            retrieval_source_id=source_pk, metadata=_json_safe(meta)))
    valid_sources = set(CatalogImage.objects.filter(project=product.project, pk__in=[
        r.retrieval_source_id for r in rows if r.retrieval_source_id]).values_list("pk", flat=True))
    for r in rows:
        if r.retrieval_source_id not in valid_sources:
            r.retrieval_source_id = None
    try:
        with transaction.atomic():
            for r in rows:
                r.save(force_insert=True)
    except IntegrityError:
        # Another run (a re-delivered task) wrote the same candidates first: use its rows.
        existing = _existing(product, cls.name, version, phash, seed, num_candidates)
        if len(existing) != num_candidates:
            raise
        return GenerateResult(existing, reused=len(existing), notices=notices, seconds=time.perf_counter() - t0)
    result = sorted(existing + rows, key=lambda g: g.candidate_index)
    progress(1.0, f"{cls.name}: {len(rows)} new candidates")
    return GenerateResult(result, created=len(rows), reused=len(existing), notices=notices,
                          seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------------- jobs
def _job_options(seed: int, num_candidates: int, params: dict | None, with_parallax: bool,
                 parallax_size: int | None = None) -> dict:
    options = {"seed": int(seed), "num_candidates": int(num_candidates), "params": dict(params or {}),
               "with_parallax": bool(with_parallax)}
    if parallax_size:
        options["parallax_size"] = int(parallax_size)
    return options


def create_generation_job(project: Project, *, product: Product | None = None, backends: Iterable[str] = (DEFAULT_BACKEND,),
                          seed: int = 0, num_candidates: int = 3, params: dict | None = None,
                          with_parallax: bool = True, parallax_size: int | None = None, user=None) -> GenerationJob:
    """A queued job (not yet sent to a worker): one product, or every product of the project."""
    backends = [str(b) for b in backends] or [DEFAULT_BACKEND]
    for name in backends:
        get_backend_class(name)  # unknown names fail here, before anything is queued
    if product is not None and product.project_id != project.pk:
        raise ValueError("the product belongs to another project")
    params_hash(params)  # not JSON: fail now
    return GenerationJob.objects.create(
        project=project, product=product, kind=GenerationJob.Kind.PRODUCT if product else GenerationJob.Kind.PROJECT,
        backends=backends, options=_job_options(seed, num_candidates, params, with_parallax, parallax_size),
        started_by=user if getattr(user, "is_authenticated", False) else None)


def create_index_job(project: Project, user=None) -> GenerationJob:
    return GenerationJob.objects.create(project=project, kind=GenerationJob.Kind.INDEX,
                                        started_by=user if getattr(user, "is_authenticated", False) else None)


def enqueue_job(job: GenerationJob, queue: str | None = None) -> GenerationJob:
    """Send the job to a Celery worker once the current transaction commits."""
    import uuid

    from generation import tasks

    task = {GenerationJob.Kind.PRODUCT: tasks.generate_for_product_task,
            GenerationJob.Kind.PROJECT: tasks.generate_for_project_task,
            GenerationJob.Kind.INDEX: tasks.build_catalog_index_task}[job.kind]
    task_id = str(uuid.uuid4())
    GenerationJob.objects.filter(pk=job.pk).update(celery_task_id=task_id)
    job.celery_task_id = task_id
    if job.kind == GenerationJob.Kind.INDEX:
        args, kwargs = [job.project_id], {"job_id": job.pk}
    else:
        args, kwargs = [job.pk], {}
    options = {"task_id": task_id}
    if queue:
        options["queue"] = queue
    transaction.on_commit(lambda: task.apply_async(args=args, kwargs=kwargs, **options))
    return job


def start_generation_job(project: Project, *, user=None, queue: str | None = None, **kwargs) -> GenerationJob:
    return enqueue_job(create_generation_job(project, user=user, **kwargs), queue)


def start_index_job(project: Project, *, user=None, queue: str | None = None) -> GenerationJob:
    return enqueue_job(create_index_job(project, user), queue)


class JobLog:
    """Appends timestamped lines to a job's log and saves progress as it goes."""

    def __init__(self, job: GenerationJob, echo: Callable[[str], None] | None = None):
        self.job = job
        self.echo = echo

    def __call__(self, message: str) -> None:
        line = f"[{timezone.now():%H:%M:%S}] {message}"
        self.job.log = (self.job.log + "\n" if self.job.log else "") + line
        GenerationJob.objects.filter(pk=self.job.pk).update(log=self.job.log)
        if self.echo:
            self.echo(line)

    def progress(self, fraction: float) -> None:
        self.job.progress = float(min(1.0, max(0.0, fraction)))
        GenerationJob.objects.filter(pk=self.job.pk).update(progress=self.job.progress)

    def counts(self, **counts) -> None:
        self.job.counts = {**self.job.counts, **counts}
        GenerationJob.objects.filter(pk=self.job.pk).update(counts=self.job.counts)


def _begin(job: GenerationJob, log: JobLog) -> bool:
    """Mark the job running; False when it already finished (a duplicate delivery)."""
    job.refresh_from_db()
    if job.finished:
        return False
    resumed = job.state == GenerationJob.State.RUNNING
    job.attempts += 1
    job.state = GenerationJob.State.RUNNING
    job.started_at = job.started_at or timezone.now()
    job.save(update_fields=["attempts", "state", "started_at"])
    if resumed:
        log("the previous run of this job was interrupted (worker stopped); running it again — "
            "candidates already written are reused")
    return True


def _finish(job: GenerationJob, log: JobLog, state: str, message: str) -> None:
    log(message)
    job.state = state
    job.finished_at = timezone.now()
    if state == GenerationJob.State.SUCCEEDED:
        job.progress = 1.0
    job.save(update_fields=["state", "finished_at", "progress"])


def run_generation_job(job_id: int, echo: Callable[[str], None] | None = None) -> GenerationJob:
    """Run a product or project generation job (what the Celery task calls). Safe to run again."""
    job = GenerationJob.objects.select_related("project", "product").get(pk=job_id)
    log = JobLog(job, echo)
    if not _begin(job, log):
        return job
    opts = job.options or {}
    seed, n = int(opts.get("seed", 0)), int(opts.get("num_candidates", 3))
    params, with_parallax = dict(opts.get("params") or {}), bool(opts.get("with_parallax", True))
    parallax_size = opts.get("parallax_size")
    if job.kind == GenerationJob.Kind.PRODUCT:
        products = [job.product]
    else:
        products = list(job.project.products.order_by("id"))
    backends = list(job.backends or [DEFAULT_BACKEND])
    total = max(1, len(products) * len(backends))
    log(f"started: {len(products)} product(s) × backend(s) {', '.join(backends)}; seed {seed}, {n} candidate(s)"
        + (f", params {json.dumps(params, sort_keys=True)}" if params else ""))
    if not products:
        _finish(job, log, GenerationJob.State.FAILED, f"failed: project {job.project.name!r} has no products")
        return job
    created = reused = failed = ok_pairs = 0
    try:
        for p_i, product in enumerate(products):
            for b_i, backend in enumerate(backends):
                step = p_i * len(backends) + b_i

                def sub(fraction, message, _step=step):
                    log.progress((_step + fraction) / total)

                label = f"{product.title} (#{product.pk}) · {backend}"
                try:
                    res = generate_for_product(product, backend, seed=seed, num_candidates=n, params=params,
                                               with_parallax=with_parallax, parallax_size=parallax_size, progress=sub)
                except USER_ERRORS as exc:
                    failed += 1
                    log(f"{label}: FAILED — {exc}")
                    continue
                ok_pairs += 1
                created += res.created
                reused += res.reused
                for notice in res.notices:
                    log(f"{label}: notice — {notice}")
                log(f"{label}: {res.created} new, {res.reused} reused candidate(s) in {res.seconds:.1f} s")
                log.counts(created=created, reused=reused, failed=failed, done=step + 1, total=total)
                log.progress((step + 1) / total)
    except Exception as exc:
        log.counts(created=created, reused=reused, failed=failed)
        log(f"error: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
        _finish(job, log, GenerationJob.State.FAILED, "failed with an unexpected error (see above); nothing half-written")
        raise
    log.counts(created=created, reused=reused, failed=failed, done=total, total=total)
    if ok_pairs == 0:
        _finish(job, log, GenerationJob.State.FAILED, f"failed: no candidates generated ({failed} failure(s))")
    else:
        extra = f"; {failed} failure(s), see above" if failed else ""
        _finish(job, log, GenerationJob.State.SUCCEEDED, f"done: {created} new, {reused} reused candidate(s){extra}")
    return job


def run_index_job(project_id: int, job_id: int | None = None, echo: Callable[[str], None] | None = None,
                  segment_side: int | None = None) -> IndexReport | None:
    """Build the project's catalog index, logging into the job when there is one."""
    project = Project.objects.get(pk=project_id)
    job = GenerationJob.objects.get(pk=job_id) if job_id else None
    log = JobLog(job, echo) if job else (lambda message: echo(message) if echo else None)
    if job is not None and not _begin(job, log):
        return None
    if job is not None:
        log(f"building the catalog index of {project.name!r}")

    def progress(fraction, message):
        if job is not None:
            log.progress(fraction)

    try:
        report = build_catalog_index(project, progress, segment_side=segment_side)
    except USER_ERRORS as exc:
        if job is None:
            raise
        _finish(job, log, GenerationJob.State.FAILED, f"failed: {exc}")
        return None
    except Exception as exc:
        if job is not None:
            log(f"error: {type(exc).__name__}: {exc}")
            _finish(job, log, GenerationJob.State.FAILED, "failed with an unexpected error")
        raise
    if job is not None:
        for message in report.skipped:
            log(f"skipped — {message}")
        log.counts(**{k: v for k, v in report.as_dict().items() if k in ("indexed", "segmented", "embedded")},
                   skipped=len(report.skipped))
        _finish(job, log, GenerationJob.State.SUCCEEDED, f"done: {report.summary()}")
    return report


# ---------------------------------------------------------------------------- learned inpainter
def train_inpainter(project: Project, *, steps: int = 200, size: int = 64, progress: Progress | None = None,
                    segment_side: int | None = None, user=None) -> ModelVersion:
    """Train the WBL inpainter on silhouette-gap holes around the project's staged catalog products
    (masks from the catalog index build, segmented now where missing). Saves versioned weights under
    ``STAGECRAFT_ARTIFACT_DIR/project-<id>/wbl-inpainter/<version>/`` and records a
    `ModelVersion(kind="inpainter")` and its `TrainingRun`."""
    from generation.ml.wbl_inpainter import WblConfig, train_wbl_inpainter

    progress = progress or _noop
    if size % 4 or size < 32:
        raise GenerationFailed("size must be a multiple of 4 and at least 32")
    if steps < 1:
        raise GenerationFailed("steps must be at least 1")
    side = int(segment_side or _setting("STAGECRAFT_CATALOG_SEGMENT_SIDE", 512))
    items = list(CatalogImage.objects.filter(project=project, kind="staged").order_by("id"))
    if not items:
        raise GenerationFailed(f"project {project.name!r} has no staged catalog photos to train the inpainter on")
    max_side = max(2 * size, min(256, 4 * size))
    run = TrainingRun.objects.create(project=project, kind=ModelVersion.Kind.INPAINTER, state=TrainingRun.State.RUNNING,
                                     params={"steps": steps, "size": size, "max_side": max_side},
                                     started_by=user if getattr(user, "is_authenticated", False) else None,
                                     started_at=timezone.now())
    try:
        images, masks, used = [], [], []
        for n, item in enumerate(items):
            progress(0.1 * n / len(items), f"reading catalog photo {n + 1}/{len(items)}")
            rgb = read_rgb(item.image.name, f"catalog photo {item.pk}")
            if item.mask:
                alpha = read_alpha(item.mask.name, rgb.shape[:2])
            else:
                alpha = _segment_small(rgb, side)
                if (alpha >= 0.5).sum() >= 16:
                    item.mask = store_pixels(_alpha_png(alpha), folder="masks").name
                    item.save(update_fields=["mask"])
            if (alpha >= 0.5).sum() < 16:
                continue
            s = max_side / max(rgb.shape[:2])
            if s < 1:  # train_wbl_inpainter resizes to max_side anyway; do it once here to save memory
                w, h = round(rgb.shape[1] * s), round(rgb.shape[0] * s)
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
            images.append(rgb)
            masks.append(alpha >= 0.5)
            used.append(item.pk)
        if not images:
            raise GenerationFailed("no staged catalog photo has a usable product mask")
        history: list[dict] = []

        def on_step(step, total, rec):
            history.append(rec)
            progress(0.1 + 0.9 * step / total, f"step {step}/{total}: loss {rec['loss']:.4f}")

        cfg = WblConfig(steps=int(steps), crop=int(size), max_side=max_side, batch_size=4,
                        log_every=max(1, min(10, steps)), output_dir=str(wbl_inpainter_dir(project)))
        out_dir = train_wbl_inpainter(images, masks, cfg, progress_callback=on_step, device="cpu")
        meta = json.loads((Path(out_dir) / "config.json").read_text())
        with transaction.atomic():
            last = ModelVersion.objects.select_for_update().filter(project=project, kind=ModelVersion.Kind.INPAINTER) \
                .order_by("-version").first()
            mv = ModelVersion.objects.create(
                project=project, kind=ModelVersion.Kind.INPAINTER, version=(last.version + 1) if last else 1,
                artifact_path=str(out_dir), backbone="wbl-edgeconnect",
                metrics={"final_loss": meta.get("final_loss"), "train_seconds": meta.get("train_seconds")},
                training_snapshot={"catalog_image_ids": used, "count": len(used), "steps": steps, "size": size},
                code_version=str(meta.get("version", "")))
            run.state = TrainingRun.State.SUCCEEDED
            run.progress = 1.0
            run.history = history
            run.model_version = mv
            run.finished_at = timezone.now()
            run.log = f"trained on {len(used)} catalog photos, {steps} steps; weights in {out_dir}"
            run.save()
        return mv
    except Exception as exc:
        run.state = TrainingRun.State.FAILED
        run.finished_at = timezone.now()
        run.log = f"failed: {exc}"
        run.save(update_fields=["state", "finished_at", "log"])
        raise
