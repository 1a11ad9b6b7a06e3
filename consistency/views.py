"""Consistency pages: per-generation check, mask correction, calibration (thin; logic in services)."""
import io
import json

import cv2
import numpy as np
from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from PIL import Image

from consistency import selectors, services
from consistency.models import MaskCorrection
from consistency.tasks import calibrate_consistency_task, check_generations_task
from core.ml.images import ImageRejected
from core.models import ModelVersion, Project, TrainingRun
from core.roles import ANNOTATOR, ML_ENGINEER, QA, has_role, role_required
from generation.models import Generation

OVERLAY_COLOURS = {"original": (45, 108, 223), "generated": (255, 120, 0)}


def _generation(pk) -> Generation:
    try:
        return selectors.generation_for_page(pk)
    except Generation.DoesNotExist:
        raise Http404("No such generation")


@role_required(ML_ENGINEER, QA)
def generation_page(request, pk):
    generation = _generation(pk)
    c = generation.consistency or {}
    return render(request, "consistency/generation.html", {
        "generation": generation,
        "project": generation.product.project,
        "source": generation.product.source_image,
        "result": c,
        "metrics": selectors.metrics_table(c),
        "corrections": selectors.corrections_for(generation)[:10],
        "has_generated_overlay": bool((c.get("mask_files") or {}).get("generated")),
        "has_original_overlay": bool((c.get("mask_files") or {}).get("original")),
    })


@require_POST
@role_required(ML_ENGINEER, QA)
def recheck(request, pk):
    generation = _generation(pk)
    result = services.check_generation(generation)
    messages.info(request, f"Checked: {'passed' if result.get('passed') else 'failed'} ({result.get('status')}).")
    return redirect("consistency:generation", pk=generation.pk)


def _overlay_png(mask: np.ndarray, colour, outline: bool = False) -> bytes:
    """Semi-transparent fill, or (for the aligned original over the generated product) a solid
    outline, so that a grown or shifted product shows as fill outside the outline."""
    rgba = np.zeros(mask.shape + (4,), np.uint8)
    if outline:
        k = max(1, round(0.004 * max(mask.shape)))
        m = mask.astype(np.uint8)
        edge = (cv2.dilate(m, np.ones((2 * k + 1, 2 * k + 1), np.uint8)) - cv2.erode(m, np.ones((3, 3), np.uint8))) > 0
        rgba[edge] = (*colour, 230)
    else:
        rgba[mask] = (*colour, 120)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


@require_GET
@role_required(ML_ENGINEER, QA, ANNOTATOR)
def overlay(request, pk, which):
    """Semi-transparent colour overlay of a mask: source (original photo's mask), original (the
    original aligned into the generated frame), generated (the generated product's mask)."""
    generation = _generation(pk)
    files = (generation.consistency or {}).get("mask_files") or {}
    if which == "source":
        source = generation.product.source_image
        name = source.mask.name if source is not None and source.mask else None
        colour = OVERLAY_COLOURS["original"]
    elif which in ("original", "generated"):
        name, colour = files.get(which), OVERLAY_COLOURS[which]
    else:
        raise Http404("No such overlay")
    if not name:
        raise Http404("No mask yet")
    try:
        mask = services.read_mask(name)
    except (ImageRejected, OSError):
        raise Http404("Mask unreadable")
    response = HttpResponse(_overlay_png(mask, colour, outline=(which == "original")), content_type="image/png")
    response["Cache-Control"] = "private, no-cache"
    return response


def _mask_context(generation: Generation, target: str) -> dict:
    if target == MaskCorrection.Target.ORIGINAL:
        source = generation.product.source_image
        if source is None:
            raise Http404("The product has no original photo")
        image_url = reverse("media", args=[source.image.name])
        mask_name = source.mask.name if source.mask else None
        width, height = source.width, source.height
    else:
        if not generation.image:
            raise Http404("The generation has no image")
        image_url = reverse("media", args=[generation.image.name])
        latest = generation.mask_corrections.filter(target=target).first()
        mask_name = latest.mask.name if latest else ((generation.consistency or {}).get("mask_files") or {}).get("generated")
        width, height = generation.width, generation.height
    return {"image_url": image_url, "mask_url": reverse("media", args=[mask_name]) if mask_name else "",
            "width": width or 0, "height": height or 0}


@role_required(ML_ENGINEER, QA, ANNOTATOR)
def mask_editor(request, pk, target):
    if target not in MaskCorrection.Target.values:
        raise Http404("No such mask")
    generation = _generation(pk)
    if request.method == "POST":
        return _save_mask(request, generation, target)
    ctx = _mask_context(generation, target)
    return render(request, "consistency/mask_editor.html", {
        "generation": generation, "project": generation.product.project, "target": target,
        "target_label": MaskCorrection.Target(target).label, **ctx,
        "save_url": reverse("consistency:mask", args=[generation.pk, target]),
        "can_see_check": has_role(request.user, ML_ENGINEER, QA),
        "corrections": generation.mask_corrections.filter(target=target)[:5] if target == "generated"
        else selectors.corrections_for(generation).filter(target="original")[:5],
    })


def _save_mask(request, generation, target):
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}").get("mask", "")
        except (ValueError, AttributeError):
            return JsonResponse({"ok": False, "error": "the request body is not valid JSON"}, status=400)
    elif "mask_file" in request.FILES:
        data = request.FILES["mask_file"].read()
    else:
        data = request.POST.get("mask", "")
    if not data:
        return JsonResponse({"ok": False, "error": "no mask in the request (field 'mask')"}, status=400)
    try:
        correction = services.save_mask_correction(generation, target, data, request.user)
    except services.MaskRejected as exc:
        return JsonResponse({"ok": False, "error": str(exc)}, status=400)
    return JsonResponse({"ok": True, "id": correction.pk, "target": correction.target,
                         "mask_url": reverse("media", args=[correction.mask.name]),
                         "coverage": correction.coverage,
                         "message": "Mask saved. The next check of this generation (and calibration) uses it."})


@role_required(ML_ENGINEER)
def calibration_page(request, slug):
    project = get_object_or_404(Project, slug=slug)
    services.notice_stale_runs(project)
    return render(request, "consistency/calibration.html", {
        "project": project,
        "versions": selectors.versions(project),
        "runs": selectors.runs(project),
        "counts": selectors.check_counts(project),
        "generations": selectors.checked_generations(project),
        "labelled": len(services.human_intact_labels(project)),
        "min_labels": services.MIN_LABELLED_GENERATIONS,
        "sam_configured": bool(services.configured_sam()),
        "rules": services.thresholds_for(project).to_dict(),
        "project_rules": project.consistency_rules or {},
    })


@require_POST
@role_required(ML_ENGINEER)
def calibrate(request, slug):
    project = get_object_or_404(Project, slug=slug)
    promote = request.POST.get("promote", "auto")
    if promote not in ("auto", "always", "never"):
        promote = "auto"
    wants_json = request.headers.get("accept", "").startswith("application/json")
    try:
        run = services.start_calibration_run(project, request.user, promote=promote,
                                             finetune_segmenter=request.POST.get("finetune_segmenter") == "on")
    except services.CalibrationError as exc:
        if wants_json:
            return JsonResponse({"error": str(exc)}, status=409)
        messages.error(request, str(exc))
        return redirect("consistency:calibration", slug=project.slug)
    result = calibrate_consistency_task.delay(run.pk)
    TrainingRun.objects.filter(pk=run.pk, celery_task_id="").update(celery_task_id=result.id or "")
    status_url = reverse("consistency:run_status", args=[project.slug, run.pk])
    if wants_json:
        return JsonResponse({"run": run.pk, "status_url": status_url}, status=202)
    messages.info(request, f"Calibration run #{run.pk} queued.")
    return redirect("consistency:calibration", slug=project.slug)


@require_GET
@role_required(ML_ENGINEER)
def run_status(request, slug, run_id):
    project = get_object_or_404(Project, slug=slug)
    services.notice_stale_runs(project)
    run = get_object_or_404(TrainingRun.objects.select_related("model_version"), pk=run_id, project=project,
                            kind=ModelVersion.Kind.CONSISTENCY)
    return JsonResponse(selectors.run_as_dict(run))


@require_POST
@role_required(ML_ENGINEER)
def promote(request, slug, version_id):
    project = get_object_or_404(Project, slug=slug)
    version = get_object_or_404(ModelVersion, pk=version_id, project=project, kind=ModelVersion.Kind.CONSISTENCY)
    try:
        services.promote_version(version, request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Consistency v{version.version} promoted: new checks use it.")
    return redirect("consistency:calibration", slug=project.slug)


@require_POST
@role_required(ML_ENGINEER)
def check_all(request, slug):
    project = get_object_or_404(Project, slug=slug)
    ids = [int(i) for i in request.POST.getlist("ids") if str(i).isdigit()] or None
    check_generations_task.delay(project.pk, ids)
    messages.info(request, "Consistency checks queued; results appear as the worker finishes them.")
    return redirect("consistency:calibration", slug=project.slug)


@role_required(ML_ENGINEER, QA)
def index(request):
    """Projects with their check counts; failed generations to review (QA) and calibration (ML)."""
    rows = [{"project": p, "counts": selectors.check_counts(p), "failed": selectors.failed_generations(p)}
            for p in Project.objects.order_by("name")]
    return render(request, "consistency/index.html", {"rows": rows, "can_calibrate": has_role(request.user, ML_ENGINEER)})
