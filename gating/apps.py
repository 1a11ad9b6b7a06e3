from django.apps import AppConfig


class GatingConfig(AppConfig):
    name = "gating"
