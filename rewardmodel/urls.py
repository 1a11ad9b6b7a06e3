from django.urls import path

from rewardmodel import views

app_name = "rewardmodel"

urlpatterns: list = [
    path("models/", views.index, name="index"),
    path("p/<slug:slug>/models/", views.models_page, name="models"),
    path("p/<slug:slug>/models/train/", views.train, name="train"),
    path("p/<slug:slug>/models/rescore/", views.rescore, name="rescore"),
    path("p/<slug:slug>/models/runs/<int:run_id>/status.json", views.run_status, name="run_status"),
    path("p/<slug:slug>/models/v<int:version>/", views.version_detail, name="version"),
    path("p/<slug:slug>/models/v<int:version>/promote/", views.promote, name="promote"),
    path("p/<slug:slug>/models/v<int:version>/rollback/", views.rollback, name="rollback"),
    path("p/<slug:slug>/models/v<int:version>/apply-threshold/", views.apply_threshold, name="apply_threshold"),
    path("api/reward/score/", views.ScoreView.as_view(), name="api_score"),
]
