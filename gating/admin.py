from django.contrib import admin

from gating.models import GateDecision, GatingItem, GatingRun

for model in (GateDecision, GatingRun, GatingItem):
    admin.site.register(model)
