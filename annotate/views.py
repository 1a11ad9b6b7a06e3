"""Pages of the annotation app. The labelling screens are driven by static/annotate/label.js via the API."""
from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotate import selectors, services
from annotate.models import Assignment
from core.models import Project
from core.roles import ANNOTATOR, ML_ENGINEER, QA, has_role, role_required

SCREENS = {"pairs": Assignment.Kind.PAIR, "images": Assignment.Kind.IMAGE}


def index(request):
    projects = Project.objects.order_by("name")
    rows = [{"project": p, "progress": selectors.queue_progress(p, request.user)} for p in projects]
    return render(request, "annotate/index.html", {
        "rows": rows,
        "can_label": has_role(request.user, ANNOTATOR),
        "can_see_stats": has_role(request.user, ML_ENGINEER, QA),
        "can_create": has_role(request.user, ML_ENGINEER),
    })


@role_required(ANNOTATOR)
def label_screen(request, slug, screen):
    if screen not in SCREENS:
        raise Http404("No such labelling screen")
    project = get_object_or_404(Project, slug=slug)
    return render(request, "annotate/label.html", {
        "project": project,
        "kind": SCREENS[screen],
        "screen": screen,
        "tags": selectors.reason_tags(),
        "progress": selectors.queue_progress(project, request.user)[SCREENS[screen]],
    })


@role_required(ML_ENGINEER, QA)
def stats(request, slug):
    project = get_object_or_404(Project, slug=slug)
    data = selectors.quality_stats(project)
    rows = data["annotators"]
    charts = [
        selectors.bar_chart_svg([(r["username"], r["gold_accuracy"]) for r in rows], title="Accuracy on gold items",
                                unit="%", max_value=1.0),
        selectors.bar_chart_svg([(r["username"], r["pair_median_s"]) for r in rows],
                                title="Median seconds per pairwise label", unit=" s"),
        selectors.bar_chart_svg([(r["username"], r["image_median_s"]) for r in rows],
                                title="Median seconds per image label", unit=" s"),
    ]
    return render(request, "annotate/stats.html", {
        "project": project, "stats": data, "charts": charts,
        "progress": selectors.queue_progress(project),
        "can_create": has_role(request.user, ML_ENGINEER),
    })


@require_POST
@role_required(ML_ENGINEER)
def create_tasks(request, slug):
    project = get_object_or_404(Project, slug=slug)
    report = services.create_tasks(project)
    messages.success(request, f"{project.name}: {report.summary()}.")
    return redirect(request.POST.get("next") or "annotate:index")
