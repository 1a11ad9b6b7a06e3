"""Models page of a project (versions, runs, promotion, rollback, thresholds) and the scoring API (thin views)."""
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.models import ModelVersion, Project, TrainingRun
from core.roles import ML_ENGINEER, QA, has_role, role_required
from generation.models import Generation
from rewardmodel import selectors, services

FORM_PARAMS = ("max_epochs", "patience", "lr", "hidden", "batch_size", "val_fraction", "backbone", "image_size")


def _version(project, version):
    return get_object_or_404(ModelVersion, project=project, kind=ModelVersion.Kind.REWARD, version=version)


@role_required(ML_ENGINEER, QA)
def index(request):
    return render(request, "rewardmodel/index.html", {"rows": selectors.projects_overview()})


@role_required(ML_ENGINEER, QA)
def models_page(request, slug):
    project = get_object_or_404(Project, slug=slug)
    services.mark_stale_runs_failed()  # a killed worker's run shows as failed, not running forever
    runs = selectors.recent_runs(project)
    shown = None
    if request.GET.get("run", "").isdigit():
        shown = get_object_or_404(TrainingRun, pk=int(request.GET["run"]), project=project)
    elif runs:
        shown = runs[0]
    last = runs[0] if runs else None
    return render(request, "rewardmodel/models.html", {
        "project": project,
        "versions": selectors.version_rows(project),
        "promoted": selectors.promoted_version(project),
        "runs": runs,
        "run": selectors.run_status(shown) if shown else None,
        "active": selectors.active_run(project),
        "labels_total": selectors.labels_since(project),
        "labels_new": selectors.labels_since(project, last.created_at if last else None),
        "retrain_every": services.retrain_every(),
        "min_labels": services.min_labels(),
        "can_edit": has_role(request.user, ML_ENGINEER),
    })


@role_required(ML_ENGINEER, QA)
def run_status(request, slug, run_id):
    run = get_object_or_404(TrainingRun, pk=run_id, project__slug=slug, kind=ModelVersion.Kind.REWARD)
    return JsonResponse(selectors.run_status(run))


@role_required(ML_ENGINEER, QA)
def version_detail(request, slug, version):
    project = get_object_or_404(Project, slug=slug)
    v = _version(project, version)
    row = selectors.version_row(v)
    choice = (v.metrics or {}).get("threshold_choice") or {}
    return render(request, "rewardmodel/version.html", {
        "project": project, "row": row, "v": v, "choice": choice,
        "curve_svg": selectors.threshold_curve_svg(choice.get("curve") or [], v.threshold, project.reward_threshold),
        "loss_svg": selectors.loss_curve_svg(getattr(getattr(v, "training_run", None), "history", None) or []),
        "snapshot": v.training_snapshot or {},
        "can_edit": has_role(request.user, ML_ENGINEER),
    })


@require_POST
@role_required(ML_ENGINEER)
def train(request, slug):
    project = get_object_or_404(Project, slug=slug)
    params = {k: request.POST[k] for k in FORM_PARAMS if request.POST.get(k, "") != ""}
    params["auto_promote"] = request.POST.get("auto_promote") == "on"
    try:
        run = services.start_training(project, request.user, params)
    except services.RewardModelError as exc:
        messages.error(request, str(exc))
        return redirect("rewardmodel:models", slug=slug)
    messages.success(request, f"Training run #{run.pk} queued.")
    return redirect(reverse("rewardmodel:models", args=[slug]) + f"?run={run.pk}")


@require_POST
@role_required(ML_ENGINEER)
def promote(request, slug, version):
    project = get_object_or_404(Project, slug=slug)
    v = _version(project, version)
    try:
        services.promote(v, request.user, override=request.POST.get("override") == "1")
    except services.RewardModelError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"v{v.version} is promoted; generations are being re-scored.")
    return redirect("rewardmodel:models", slug=slug)


@require_POST
@role_required(ML_ENGINEER)
def rollback(request, slug, version):
    project = get_object_or_404(Project, slug=slug)
    v = _version(project, version)
    try:
        services.rollback(v, request.user)
    except services.RewardModelError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Rolled back to v{v.version}; generations are being re-scored.")
    return redirect("rewardmodel:models", slug=slug)


@require_POST
@role_required(ML_ENGINEER)
def apply_threshold(request, slug, version):
    project = get_object_or_404(Project, slug=slug)
    v = _version(project, version)
    try:
        project = services.apply_threshold(v, request.user)
    except services.RewardModelError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Project gate threshold set to {project.reward_threshold:.4f} (from v{v.version}).")
    return redirect("rewardmodel:version", slug=slug, version=version)


@require_POST
@role_required(ML_ENGINEER)
def rescore(request, slug):
    project = get_object_or_404(Project, slug=slug)
    if selectors.promoted_version(project) is None:
        messages.error(request, "No promoted reward model to score with.")
    else:
        services.enqueue_scoring(project.pk)
        messages.success(request, "Re-scoring queued.")
    return redirect("rewardmodel:models", slug=slug)


# --- API: POST /api/reward/score/ {"generation": <id>} -> score + model version ----------------


class IsMLEngineer(BasePermission):
    message = "This API is for: ml_engineer."

    def has_permission(self, request, view):
        return has_role(request.user, ML_ENGINEER)


class ScoreRequest(serializers.Serializer):
    generation = serializers.IntegerField(min_value=1)


class ScoreResponse(serializers.Serializer):
    generation = serializers.IntegerField()
    score = serializers.FloatField()
    model_version = serializers.DictField()
    project_threshold = serializers.FloatField()
    passes_threshold = serializers.BooleanField()


class ScoreView(APIView):
    permission_classes = [IsAuthenticated, IsMLEngineer]

    @extend_schema(request=ScoreRequest, responses={200: ScoreResponse})
    def post(self, request):
        data = ScoreRequest(data=request.data)
        data.is_valid(raise_exception=True)
        generation = Generation.objects.filter(pk=data.validated_data["generation"]).first()
        if generation is None:
            return Response({"detail": "no such generation"}, status=status.HTTP_404_NOT_FOUND)
        try:
            return Response(services.score_one(generation))
        except services.NoPromotedModel as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except services.RewardModelError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
