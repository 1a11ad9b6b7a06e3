from django import forms
from django.contrib import admin, messages
from django.shortcuts import render

from core.models import CatalogImage, ModelVersion, Product, Project, SourceImage, TrainingRun
from core.tasks import import_into_project


class ImportForm(forms.Form):
    path = forms.CharField(label="Manifest, HFPC label file or folder (path on the server)", max_length=1000)
    format = forms.ChoiceField(choices=[("auto", "detect (manifest or HFPC)"), ("manifest", "manifest"),
                                        ("hfpc", "HFPC labels"), ("products", "folder of product photos"),
                                        ("catalog", "folder of catalog photos")])
    category = forms.CharField(required=False, help_text="folder imports only; default: subfolder name")


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "reward_threshold", "labels_per_item", "created_at")
    prepopulated_fields = {"slug": ("name",)}
    actions = ["import_data"]

    @admin.action(description="Import photos or labels into the selected project")
    def import_data(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one project to import into.", messages.ERROR)
            return None
        project = queryset.get()
        form = ImportForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            result = import_into_project.delay(project.pk, form.cleaned_data["path"], form.cleaned_data["format"],
                                               form.cleaned_data["category"])
            self.message_user(request, f"Import queued as task {result.id}; its report appears under Task results.")
            return None
        return render(request, "admin/core/import_form.html", {
            "form": form, "project": project, "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        })


class SourceImageInline(admin.TabularInline):
    model = SourceImage
    extra = 0
    readonly_fields = ("sha256", "width", "height")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("title", "category", "brand", "project")
    list_filter = ("project", "category")
    search_fields = ("title", "category", "brand", "external_id")
    inlines = [SourceImageInline]


@admin.register(CatalogImage)
class CatalogImageAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "category", "kind", "width", "height")
    list_filter = ("project", "category", "kind")
    readonly_fields = ("sha256",)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("project", "kind", "version", "status", "created_at")
    list_filter = ("project", "kind", "status")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("project", "kind", "state", "progress", "created_at")
    list_filter = ("kind", "state")
