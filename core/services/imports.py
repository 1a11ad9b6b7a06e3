"""Import product photos, staged catalog photos and HFPC labels into a project.

Every record is validated and written in its own transaction: a bad record is reported with its
line number and stores nothing, the others go in, and re-importing the same file is a no-op.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from core.ml.images import ImageRejected, sha256_of
from core.models import CatalogImage, Product, Project, SourceImage
from core.services.storage import store_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
PRODUCT_KINDS = {"product_plain", "product_catalog", "product"}
CATALOG_KINDS = {"staged", "stage", "catalog"}
IGNORED_KINDS = {"product_in_store"}
URL_TIMEOUT_S = 20
MAX_REMOTE_BYTES = 50 * 1024 * 1024


class ImportFailed(ValueError):
    """The import as a whole cannot start (missing file, unknown format)."""


@dataclass
class ImportReport:
    created: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"created": self.created, "skipped": self.skipped, "errors": self.errors, "notes": self.notes}

    def summary(self) -> str:
        text = f"{self.created} created, {self.skipped} already present, {len(self.errors)} errors"
        return text + "".join(f"\n  {line}" for line in self.notes + self.errors)


def read_reference(ref: str, base_dir: Path) -> bytes:
    """Bytes of a local path (relative to the manifest) or of an http(s) URL."""
    if ref.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(ref, timeout=URL_TIMEOUT_S) as response:
                data = response.read(MAX_REMOTE_BYTES + 1)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ImageRejected(f"{ref}: could not be fetched ({exc}); without network access use local paths")
        if len(data) > MAX_REMOTE_BYTES:
            raise ImageRejected(f"{ref}: larger than {MAX_REMOTE_BYTES // 2**20} MB")
        return data
    path = Path(ref)
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise ImageRejected(f"{ref}: no such file ({path})")
    return path.read_bytes()


def _add_product_image(project: Project, data: bytes, *, name: str, title: str, category: str,
                       external_id: str, brand: str = "") -> bool:
    """Returns True when something new was stored."""
    stored = store_image(data, name=name)
    with transaction.atomic():
        product, product_created = Product.objects.get_or_create(
            project=project, external_id=external_id,
            defaults={"title": title, "category": category, "brand": brand},
        )
        _, image_created = SourceImage.objects.get_or_create(
            product=product, sha256=stored.decoded.sha256,
            defaults={"image": stored.name, "width": stored.decoded.width, "height": stored.decoded.height},
        )
    return product_created or image_created


def _add_catalog_image(project: Project, data: bytes, *, name: str, category: str, kind: str,
                       source: str = "", license: str = "") -> bool:
    stored = store_image(data, name=name)
    _, created = CatalogImage.objects.get_or_create(
        project=project, sha256=stored.decoded.sha256,
        defaults={"image": stored.name, "width": stored.decoded.width, "height": stored.decoded.height,
                  "category": category, "kind": "stage" if kind == "stage" else "staged",
                  "source": source, "license": license},
    )
    return created


def _count(report: ImportReport, created: bool) -> None:
    if created:
        report.created += 1
    else:
        report.skipped += 1


def jsonl_records(path: Path, report: ImportReport):
    """(line number, object) per non-blank line; bad lines go to report.errors with their number."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            report.errors.append(f"line {number}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            report.errors.append(f"line {number}: expected a JSON object")
            continue
        yield number, record


def import_manifest(project: Project, manifest: Path) -> ImportReport:
    """The shared-data manifest format: one JSON object per line with `kind`, `file`, `category`."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ImportFailed(f"{manifest}: no such manifest file")
    report = ImportReport()
    for number, record in jsonl_records(manifest, report):
        kind, ref = record.get("kind"), record.get("file")
        if not ref or not kind:
            report.errors.append(f"line {number}: needs 'kind' and 'file'")
            continue
        if kind in IGNORED_KINDS:
            continue
        if kind not in PRODUCT_KINDS | CATALOG_KINDS:
            report.errors.append(f"line {number}: unknown kind {kind!r}")
            continue
        try:
            data = read_reference(ref, manifest.parent)
            category = record.get("category") or record.get("subject") or ""
            if kind in PRODUCT_KINDS:
                stem = Path(ref).stem
                created = _add_product_image(
                    project, data, name=ref,
                    title=record.get("title") or stem.replace("-", " "),
                    category=category or "product",
                    external_id=str(record.get("product") or record.get("external_id") or stem),
                    brand=record.get("brand", ""),
                )
            else:
                created = _add_catalog_image(project, data, name=ref, category=category, kind=kind,
                                             source=record.get("source", ""), license=record.get("license", ""))
        except ImageRejected as exc:
            report.errors.append(f"line {number}: {exc}")
            continue
        _count(report, created)
    return report


def import_folder(project: Project, folder: Path, *, kind: str, category: str = "") -> ImportReport:
    """Every image under `folder`; the category is `category` or the name of the image's parent folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImportFailed(f"{folder}: no such folder")
    if kind not in ("product", "catalog"):
        raise ImportFailed(f"kind must be 'product' or 'catalog', not {kind!r}")
    report = ImportReport()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            report.notes.append(f"{path.name}: skipped (not an image file name)")
            continue
        item_category = category or (path.parent.name if path.parent != folder else "")
        try:
            data = path.read_bytes()
            if kind == "product":
                created = _add_product_image(project, data, name=path.name, title=path.stem.replace("-", " "),
                                             category=item_category or "product", external_id=path.stem)
            else:
                created = _add_catalog_image(project, data, name=path.name, category=item_category, kind="staged",
                                             source=str(path.relative_to(folder)))
        except ImageRejected as exc:
            report.errors.append(str(exc))
            continue
        _count(report, created)
    return report


def hfpc_import_user(source: str = "hfpc"):
    """Imported labels belong to a system account that cannot log in."""
    user, created = get_user_model().objects.get_or_create(username=f"import-{source}", defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def import_hfpc_labels(project: Project, labels_file: Path) -> ImportReport:
    """The public HFPC label format: {"origin": path-or-URL, "generation": path-or-URL, "label": 0|1}.

    label 1 means the generated background is appropriate. Each origin becomes a product (with that
    photo as its source image), each generation an imported Generation with one ImageLabel.
    """
    from annotate.models import ImageLabel
    from generation.models import Generation

    labels_file = Path(labels_file)
    if not labels_file.is_file():
        raise ImportFailed(f"{labels_file}: no such file")
    importer = hfpc_import_user()
    report = ImportReport()
    for number, record in jsonl_records(labels_file, report):
        origin, generated, label = record.get("origin"), record.get("generation"), record.get("label")
        if not origin or not generated or label not in (0, 1, True, False):
            report.errors.append(f"line {number}: needs 'origin', 'generation' and 'label' 0 or 1")
            continue
        try:
            origin_data = read_reference(origin, labels_file.parent)
            generated_data = read_reference(generated, labels_file.parent)
            stored_generation = store_image(generated_data, name=generated)
            origin_key = "hfpc:" + sha256_of(origin_data)[:32]
            with transaction.atomic():
                _add_product_image(project, origin_data, name=origin, title=record.get("title") or Path(origin).stem,
                                   category=record.get("category") or "product", external_id=origin_key)
                product = Product.objects.get(project=project, external_id=origin_key)
                generation, _ = Generation.objects.get_or_create(
                    product=product, backend="imported", backend_version="hfpc",
                    params_hash=stored_generation.decoded.sha256, seed=0, candidate_index=0,
                    defaults={"status": Generation.Status.SUCCEEDED, "image": stored_generation.name,
                              "sha256": stored_generation.decoded.sha256,
                              "width": stored_generation.decoded.width, "height": stored_generation.decoded.height,
                              "params": {"source": generated}},
                )
                _, created = ImageLabel.objects.get_or_create(
                    generation=generation, annotator=importer,
                    defaults={"source": ImageLabel.Source.IMPORT, "background_appropriate": bool(label)},
                )
        except ImageRejected as exc:
            report.errors.append(f"line {number}: {exc}")
            continue
        _count(report, created)
    return report


def import_path(project: Project, path: Path, fmt: str = "auto", category: str = "") -> ImportReport:
    """Dispatch on format: 'manifest', 'hfpc', 'products' (folder), 'catalog' (folder), or 'auto'."""
    path = Path(path)
    if fmt == "auto":
        if path.is_dir():
            raise ImportFailed("for a folder, say whether it holds products or catalog photos")
        fmt = "hfpc" if _looks_like_hfpc(path) else "manifest"
    if fmt == "manifest":
        return import_manifest(project, path)
    if fmt == "hfpc":
        return import_hfpc_labels(project, path)
    if fmt in ("products", "catalog"):
        return import_folder(project, path, kind="product" if fmt == "products" else "catalog", category=category)
    raise ImportFailed(f"unknown import format {fmt!r}")


def _looks_like_hfpc(path: Path) -> bool:
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(first, dict) and "origin" in first and "generation" in first
    return False
