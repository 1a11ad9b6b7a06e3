from django.urls import path

from annotate import api, views

app_name = "annotate"

urlpatterns: list = [
    path("label/", views.index, name="index"),
    path("p/<slug:slug>/label/stats/", views.stats, name="stats"),
    path("p/<slug:slug>/label/tasks/", views.create_tasks, name="create_tasks"),
    path("p/<slug:slug>/label/<str:screen>/", views.label_screen, name="screen"),
    path("api/annotate/<slug:slug>/export/", api.ExportView.as_view(), name="api_export"),
    path("api/annotate/<slug:slug>/<str:queue>/next/", api.NextTaskView.as_view(), name="api_next"),
    path("api/annotate/<slug:slug>/<str:queue>/labels/", api.SubmitLabelView.as_view(), name="api_submit"),
    path("api/annotate/<slug:slug>/<str:queue>/undo/", api.UndoView.as_view(), name="api_undo"),
]
