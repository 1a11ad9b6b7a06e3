from django.urls import path

app_name = "rewardmodel"

urlpatterns: list = []
