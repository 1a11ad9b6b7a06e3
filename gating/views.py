import json
from datetime import datetime, time

from django.contrib import messages
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.http import require_POST
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from annotate.models import REASON_TAGS
from core.models import Project
from core.roles import ML_ENGINEER, QA, has_role, role_required
from gating import selectors, services
from gating.export import export_approved_zip
from gating.models import GatingRun
from generation.models import Generation


def _float(value):
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _date(value):
    """An ISO date or date-time from a query string; a bare date means its midnight (UTC)."""
    if not value:
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            return None
        parsed = datetime.combine(day, time.min)
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, timezone.utc)


def _filters(request) -> selectors.QAFilters:
    get = request.GET
    version = get.get("model_version")
    return selectors.QAFilters(
        category=get.get("category", ""), backend=get.get("backend", ""),
        min_reward=_float(get.get("min_reward")), max_reward=_float(get.get("max_reward")),
        model_version=int(version) if version and version.isdigit() else None,
        since=_date(get.get("since")), until=_date(get.get("until")),
        sort=get.get("sort", "-created_at"), include_reviewed=get.get("reviewed") == "1",
    )


@role_required(QA, ML_ENGINEER)
def qa_grid(request, slug):
    project = get_object_or_404(Project, slug=slug)
    ads = selectors.qa_queue(project, _filters(request))[:200]
    return render(request, "gating/qa.html", {
        "project": project, "ads": ads, "choices": selectors.filter_choices(project), "filters": request.GET,
        "reason_tags": REASON_TAGS,
    })


@role_required(QA, ML_ENGINEER)
def qa_detail(request, slug, pk):
    generation = get_object_or_404(Generation.objects.select_related("product__project"), pk=pk, product__project__slug=slug)
    return render(request, "gating/qa_detail.html", {
        "project": generation.product.project, "ad": generation, "reason_tags": REASON_TAGS,
        "decisions": generation.gate_decisions.select_related("reward_model", "consistency_model"),
        "source": generation.product.source_image,
    })


@require_POST
@role_required(QA)
def qa_review(request, slug):
    """JSON: {"ids": [..], "decision": "approve"|"reject", "reason_tags": [..]}"""
    project = get_object_or_404(Project, slug=slug)
    try:
        body = json.loads(request.body)
        ids = [int(i) for i in body["ids"]]
        approve = {"approve": True, "reject": False}[body["decision"]]
        tags = [str(t) for t in body.get("reason_tags", [])]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "send ids, decision approve|reject and optional reason_tags"}, status=400)
    unknown = set(tags) - {key for key, _ in REASON_TAGS}
    if unknown:
        return JsonResponse({"error": f"unknown reason tags: {', '.join(sorted(unknown))}"}, status=400)
    generations = list(Generation.objects.filter(id__in=ids, product__project=project).select_related("product__project"))
    if len(generations) != len(set(ids)):
        return JsonResponse({"error": "some ads are not in this project"}, status=404)
    for generation in generations:
        services.review(generation, request.user, approve=approve, reason_tags=tags)
    return JsonResponse({"reviewed": len(generations), "decision": body["decision"]})


@role_required(QA, ML_ENGINEER)
def export_approved(request, slug):
    project = get_object_or_404(Project, slug=slug)
    response = HttpResponse(export_approved_zip(project, _date(request.GET.get("since"))), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-approved.zip"'
    return response


@role_required(QA, ML_ENGINEER)
def dashboard(request, slug):
    project = get_object_or_404(Project, slug=slug)
    stats = selectors.dashboard(project)
    return render(request, "gating/dashboard.html", {
        "project": project, "stats": stats, "runs": project.gating_runs.all()[:10],
        "can_run": has_role(request.user, ML_ENGINEER),
        "histograms": [(name, counts, max(counts) or 1) for name, counts in stats["score_histograms"].items()],
    })


@require_POST
@role_required(ML_ENGINEER)
def start_run(request, slug):
    project = get_object_or_404(Project, slug=slug)
    run = services.start_gating_run(project, request.user)
    messages.success(request, f"Gated generation started for {run.items.count()} products.")
    return redirect("gating:run", slug=slug, pk=run.pk)


@require_POST
@role_required(ML_ENGINEER)
def regate(request, slug):
    project = get_object_or_404(Project, slug=slug)
    counts = services.regate(project, request.user, include_approved=request.POST.get("include_approved") == "1")
    messages.success(request, "Re-gated: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))
    return redirect("gating:dashboard", slug=slug)


@role_required(QA, ML_ENGINEER)
def run_detail(request, slug, pk):
    run = get_object_or_404(GatingRun, pk=pk, project__slug=slug)
    items = run.items.select_related("product", "passed_generation")
    if request.GET.get("format") == "json":
        return JsonResponse({"state": run.state, "progress": run.progress, "summary": run.summary, "log": run.log,
                             "items": [{"product": i.product.title, "state": i.state, "attempts": i.attempts}
                                       for i in items]})
    return render(request, "gating/run.html", {"project": run.project, "run": run, "items": items})


class ApprovedQuery(serializers.Serializer):
    project = serializers.SlugField()
    since = serializers.DateTimeField(required=False)


def _api_project(request, slug) -> Project:
    if not has_role(request.user, QA, ML_ENGINEER):
        raise PermissionDenied("approved ads are for QA and ML engineers")
    return get_object_or_404(Project, slug=slug)


@api_view(["GET"])
def api_approved(request):
    """Approved ads of a project, optionally only those approved since a time (ISO 8601)."""
    query = ApprovedQuery(data=request.query_params)
    if not query.is_valid():
        raise ValidationError(query.errors)
    project = _api_project(request, query.validated_data["project"])
    ads = selectors.approved_generations(project, query.validated_data.get("since"))
    return Response({"project": project.slug, "count": ads.count(),
                     "results": [_with_url(request, selectors.provenance(g)) for g in ads]})


@api_view(["GET"])
def api_approved_detail(request, pk):
    generation = get_object_or_404(Generation.objects.select_related("product__project"), pk=pk)
    project = _api_project(request, generation.product.project.slug)
    if not selectors.approved_generations(project).filter(pk=pk).exists():
        return Response({"detail": "this ad is not approved"}, status=404)
    return Response(_with_url(request, selectors.provenance(generation)))


def _with_url(request, row: dict) -> dict:
    from django.urls import reverse

    row["image_url"] = request.build_absolute_uri(reverse("media", args=[row["image"]]))
    return row
