"""Reads for the generation pages (no writes here)."""
from __future__ import annotations

import json
from collections import OrderedDict

from core.models import CatalogImage, Product, Project
from generation.models import Generation, GenerationJob


def catalog_index_status(project: Project) -> dict:
    """What the last catalog index build reported, or ``{"built": False}``."""
    from generation.services import catalog_index_dir

    folder = catalog_index_dir(project)
    staged = CatalogImage.objects.filter(project=project, kind="staged").count()
    stages = CatalogImage.objects.filter(project=project, kind="stage").count()
    status = {"built": False, "staged_photos": staged, "stages": stages, "path": str(folder)}
    report = folder / "build-report.json"
    if (folder / "meta.json").is_file() and report.is_file():
        try:
            status.update(json.loads(report.read_text()), built=True)
        except ValueError:
            pass
    return status


def product_generations(product: Product):
    return (Generation.objects.filter(product=product, status=Generation.Status.SUCCEEDED)
            .select_related("retrieval_source").order_by("-created_at", "candidate_index"))


def generation_runs(product: Product) -> list[dict]:
    """The product's generations grouped by run (backend, version, params, seed), newest run first;
    each run lists its candidates in order and the parallax video of its first candidate."""
    runs: "OrderedDict[tuple, dict]" = OrderedDict()
    for g in product_generations(product):
        key = (g.backend, g.backend_version, g.params_hash, g.seed)
        run = runs.setdefault(key, {"backend": g.backend, "backend_version": g.backend_version, "params": g.params,
                                    "seed": g.seed, "created_at": g.created_at, "candidates": [], "parallax": None,
                                    "notices": []})
        run["candidates"].append(g)
        if g.metadata.get("parallax") and run["parallax"] is None:
            run["parallax"] = g.metadata["parallax"]
        for notice in g.metadata.get("notices") or []:
            if notice not in run["notices"]:
                run["notices"].append(notice)
    out = list(runs.values())
    for run in out:
        run["candidates"].sort(key=lambda g: g.candidate_index)
    return out


def recent_jobs(project: Project, product: Product | None = None, limit: int = 10):
    qs = GenerationJob.objects.filter(project=project).select_related("product", "started_by")
    if product is not None:
        qs = qs.filter(product=product)
    return qs[:limit]


def job_status(job: GenerationJob) -> dict:
    """The small JSON the job page polls."""
    return {"id": job.pk, "kind": job.kind, "state": job.state, "finished": job.finished,
            "progress": round(job.progress, 4), "log": job.log, "counts": job.counts,
            "created_at": job.created_at.isoformat(), "started_at": job.started_at.isoformat() if job.started_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None}
