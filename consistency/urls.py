from django.urls import path

from consistency import views

app_name = "consistency"

urlpatterns: list = [
    path("consistency/", views.index, name="index"),
    path("consistency/g/<int:pk>/", views.generation_page, name="generation"),
    path("consistency/g/<int:pk>/check/", views.recheck, name="recheck"),
    path("consistency/g/<int:pk>/overlay/<str:which>.png", views.overlay, name="overlay"),
    path("consistency/g/<int:pk>/mask/<str:target>/", views.mask_editor, name="mask"),
    path("p/<slug:slug>/consistency/", views.calibration_page, name="calibration"),
    path("p/<slug:slug>/consistency/calibrate/", views.calibrate, name="calibrate"),
    path("p/<slug:slug>/consistency/check/", views.check_all, name="check_all"),
    path("p/<slug:slug>/consistency/runs/<int:run_id>.json", views.run_status, name="run_status"),
    path("p/<slug:slug>/consistency/versions/<int:version_id>/promote/", views.promote, name="promote"),
]
