"""Export of approved ads: a zip with the images and a CSV and JSONL of scores and provenance."""
import csv
import io
import json
import zipfile
from pathlib import PurePosixPath

from django.core.files.storage import default_storage

from gating.selectors import approved_generations, provenance

CSV_FIELDS = ["id", "product_title", "category", "backend", "backend_version", "seed", "reward_score",
              "reward_model_version", "consistency_passed", "image_file", "sha256", "created_at"]


def export_approved_zip(project, since=None) -> bytes:
    rows = [provenance(g) for g in approved_generations(project, since)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            image_file = f"images/{row['id']}{PurePosixPath(row['image']).suffix}"
            with default_storage.open(row["image"], "rb") as fh:
                archive.writestr(image_file, fh.read())
            row["image_file"] = image_file
            writer.writerow({"product_title": row["product"]["title"], "category": row["product"]["category"],
                             **{k: row.get(k) for k in CSV_FIELDS if k not in ("product_title", "category")}})
        archive.writestr("approved.csv", table.getvalue())
        archive.writestr("approved.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    return buffer.getvalue()
