from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core import views as core_views

urlpatterns = [
    path("login/", login_not_required(auth_views.LoginView.as_view()), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^media/(?P<path>.+)$", core_views.media, name="media"),
    path("", include("annotate.urls")),
    path("", include("generation.urls")),
    path("", include("rewardmodel.urls")),
    path("", include("consistency.urls")),
    path("", include("gating.urls")),
    path("", core_views.home, name="home"),
    path("p/<slug:slug>/", core_views.project_detail, name="project_detail"),
    path("p/<slug:slug>/products/add/", core_views.product_add, name="product_add"),
    path("p/<slug:slug>/products/<int:pk>/", core_views.product_detail, name="product_detail"),
]
