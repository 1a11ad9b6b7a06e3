import mimetypes
import posixpath

from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render

from core import selectors
from core.forms import ProductUploadForm
from core.models import Product, Project
from core.roles import ML_ENGINEER, QA, has_role, role_required
from core.services.products import add_product


def home(request):
    return render(request, "core/home.html", {"projects": selectors.projects_with_counts()})


def project_detail(request, slug):
    project = get_object_or_404(Project, slug=slug)
    return render(request, "core/project_detail.html", {
        "project": project,
        "products": selectors.project_products(project),
        "catalog": selectors.project_catalog(project),
        "queues": selectors.queue_counts(project),
    })


def product_detail(request, slug, pk):
    product = get_object_or_404(Product.objects.select_related("project"), pk=pk, project__slug=slug)
    return render(request, "core/product_detail.html", {
        "project": product.project,
        "product": product,
        "generations": product.generations.filter(status="succeeded").order_by("-created_at"),
        "show_scores": has_role(request.user, ML_ENGINEER, QA),
    })


@role_required(ML_ENGINEER)
def product_add(request, slug):
    project = get_object_or_404(Project, slug=slug)
    form = ProductUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        product = add_product(project, title=form.cleaned_data["title"], category=form.cleaned_data["category"],
                              brand=form.cleaned_data["brand"], image_bytes=form.image_bytes,
                              image_name=form.cleaned_data["image"].name)
        messages.success(request, f"Added {product.title}.")
        return redirect("product_detail", slug=project.slug, pk=product.pk)
    return render(request, "core/product_form.html", {"project": project, "form": form}, status=400 if form.errors else 200)


def media(request, path):
    """Images are served only to logged-in users: unreleased ads are not public."""
    path = posixpath.normpath(path).lstrip("/")
    if path.startswith("..") or not default_storage.exists(path):
        raise Http404("No such file")
    if hasattr(default_storage, "path"):
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        response = FileResponse(default_storage.open(path, "rb"), content_type=content_type)
        response["Cache-Control"] = "private, max-age=31536000, immutable"
        return response
    return HttpResponseRedirect(default_storage.url(path))
