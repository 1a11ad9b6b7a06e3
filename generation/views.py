"""Generation pages. Every logged-in user may look; only ML engineers start jobs; scores are shown
to ML engineers and QA only."""
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core.models import Product, Project
from core.roles import ML_ENGINEER, QA, has_role, role_required
from generation import selectors, services
from generation.forms import GenerateForm
from generation.models import GenerationJob


def index(request):
    projects = Project.objects.order_by("name")
    return render(request, "generation/index.html", {
        "projects": [(p, selectors.catalog_index_status(p), selectors.recent_jobs(p, limit=3)) for p in projects],
    })


def project_generation(request, slug):
    project = get_object_or_404(Project, slug=slug)
    backends = services.backend_availability(project)
    return render(request, "generation/project.html", {
        "project": project,
        "index_status": selectors.catalog_index_status(project),
        "products": project.products.order_by("title").prefetch_related("source_images"),
        "jobs": selectors.recent_jobs(project),
        "form": GenerateForm(backends=backends, inpainters=services.inpainter_options(project)),
        "backends": backends,
        "can_start": has_role(request.user, ML_ENGINEER),
    })


@require_POST
@role_required(ML_ENGINEER)
def build_index(request, slug):
    project = get_object_or_404(Project, slug=slug)
    job = services.start_index_job(project, user=request.user)
    messages.success(request, "Building the catalog index in the background.")
    return redirect("generation:job", pk=job.pk)


@require_POST
@role_required(ML_ENGINEER)
def generate_all(request, slug):
    project = get_object_or_404(Project, slug=slug)
    backends = services.backend_availability(project)
    form = GenerateForm(request.POST, backends=backends, inpainters=services.inpainter_options(project))
    if not form.is_valid():
        return render(request, "generation/project.html", {
            "project": project, "index_status": selectors.catalog_index_status(project),
            "products": project.products.order_by("title"), "jobs": selectors.recent_jobs(project),
            "form": form, "backends": backends, "can_start": True}, status=400)
    data = form.cleaned_data
    job = services.start_generation_job(project, user=request.user, backends=[data["backend"]], seed=data["seed"],
                                        num_candidates=data["num_candidates"], params=data["params"],
                                        with_parallax=data["with_parallax"])
    messages.success(request, f"Generating for all {project.products.count()} products in the background.")
    return redirect("generation:job", pk=job.pk)


def product_generation(request, slug, pk):
    product = get_object_or_404(Product.objects.select_related("project"), pk=pk, project__slug=slug)
    project = product.project
    can_start = has_role(request.user, ML_ENGINEER)
    backends = services.backend_availability(project)
    status = 200
    if request.method == "POST":
        if not can_start:
            raise PermissionDenied(f"Starting generation is for: {ML_ENGINEER}.")
        form = GenerateForm(request.POST, backends=backends, inpainters=services.inpainter_options(project))
        if form.is_valid():
            data = form.cleaned_data
            job = services.start_generation_job(project, product=product, user=request.user,
                                                backends=[data["backend"]], seed=data["seed"],
                                                num_candidates=data["num_candidates"], params=data["params"],
                                                with_parallax=data["with_parallax"])
            messages.success(request, f"Generating {data['num_candidates']} candidate(s) with {data['backend']}.")
            return redirect("generation:job", pk=job.pk)
        status = 400
    else:
        form = GenerateForm(backends=backends, inpainters=services.inpainter_options(project))
    return render(request, "generation/product.html", {
        "project": project,
        "product": product,
        "runs": selectors.generation_runs(product),
        "jobs": selectors.recent_jobs(project, product, limit=5),
        "index_status": selectors.catalog_index_status(project),
        "form": form,
        "backends": backends,
        "can_start": can_start,
        "show_scores": has_role(request.user, ML_ENGINEER, QA),
    }, status=status)


def job_detail(request, pk):
    job = get_object_or_404(GenerationJob.objects.select_related("project", "product", "started_by"), pk=pk)
    return render(request, "generation/job.html", {"job": job, "status": selectors.job_status(job)})


def job_status(request, pk):
    job = get_object_or_404(GenerationJob, pk=pk)
    return JsonResponse(selectors.job_status(job))
