from django.urls import path

app_name = "gating"

urlpatterns: list = []
