from django.urls import path

from generation import views

app_name = "generation"

urlpatterns = [
    path("generation/", views.index, name="index"),
    path("generation/jobs/<int:pk>/", views.job_detail, name="job"),
    path("generation/jobs/<int:pk>/status.json", views.job_status, name="job_status"),
    path("p/<slug:slug>/generation/", views.project_generation, name="project"),
    path("p/<slug:slug>/generation/index/", views.build_index, name="build_index"),
    path("p/<slug:slug>/generation/all/", views.generate_all, name="generate_all"),
    path("p/<slug:slug>/products/<int:pk>/generation/", views.product_generation, name="product"),
]
