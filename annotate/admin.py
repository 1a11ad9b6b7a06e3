from django.contrib import admin

from annotate.models import ComparisonTask, ImageLabel, ImageTask, PairwiseLabel

for model in (ComparisonTask, PairwiseLabel, ImageTask, ImageLabel):
    admin.site.register(model)
