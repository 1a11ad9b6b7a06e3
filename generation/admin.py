from django.contrib import admin

from generation.models import Generation


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ("id", "product", "backend", "backend_version", "status", "reward_score", "gate_status")
    list_filter = ("backend", "status", "gate_status")
    raw_id_fields = ("product", "retrieval_source")
