from django.urls import path

from gating import views

app_name = "gating"

urlpatterns = [
    path("p/<slug:slug>/qa/", views.qa_grid, name="qa"),
    path("p/<slug:slug>/qa/review/", views.qa_review, name="qa_review"),
    path("p/<slug:slug>/qa/export.zip", views.export_approved, name="export"),
    path("p/<slug:slug>/qa/<int:pk>/", views.qa_detail, name="qa_detail"),
    path("p/<slug:slug>/gating/", views.dashboard, name="dashboard"),
    path("p/<slug:slug>/gating/start/", views.start_run, name="start_run"),
    path("p/<slug:slug>/gating/regate/", views.regate, name="regate"),
    path("p/<slug:slug>/gating/runs/<int:pk>/", views.run_detail, name="run"),
    path("api/gating/approved/", views.api_approved, name="api_approved"),
    path("api/gating/approved/<int:pk>/", views.api_approved_detail, name="api_approved_detail"),
]
