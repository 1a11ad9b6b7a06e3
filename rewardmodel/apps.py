from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_save


class RewardmodelConfig(AppConfig):
    name = "rewardmodel"

    def ready(self):
        from annotate.models import ImageLabel, PairwiseLabel

        # A receiver rather than calls in each writer: labels arrive from the annotate submit
        # service, label import, QA review (gating) and the HFPC import, and none of those apps
        # should know the reward model exists.
        for model in (PairwiseLabel, ImageLabel):
            post_save.connect(_label_saved, sender=model, dispatch_uid=f"reward-retrain-check-{model.__name__}")


def _label_saved(sender, instance, created, **kwargs):
    if not created or kwargs.get("raw"):
        return
    from rewardmodel import services

    transaction.on_commit(lambda: services.label_committed(instance))
