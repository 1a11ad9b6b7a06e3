from django.urls import path

app_name = "consistency"

urlpatterns: list = []
