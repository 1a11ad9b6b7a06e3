import json

from django.core.management.base import BaseCommand, CommandError

from core.models import Project
from rewardmodel import services


class Command(BaseCommand):
    help = ("Train a reward-model version for a project from its labels. Queues a Celery task, or runs "
            "here with --sync. Parameters: --set max_epochs=40 --set hidden=256,64 --set auto_promote=false ...")

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("--sync", action="store_true", help="train in this process instead of a worker")
        parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="training parameter")

    def handle(self, project, sync, set, **options):
        proj = Project.objects.filter(slug=project).first()
        if proj is None:
            raise CommandError(f"no project {project!r}")
        params = {}
        for item in set:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--set {item!r}: use NAME=VALUE")
            params[name.strip()] = value.strip()
        try:
            run = services.start_training(proj, None, params, enqueue=not sync)
        except services.RewardModelError as exc:
            raise CommandError(str(exc)) from None
        if not sync:
            self.stdout.write(f"queued training run #{run.pk} (task {run.celery_task_id})")
            return
        run = services.run_training(run.pk)
        self.stdout.write(run.log)
        if run.state != "succeeded":
            raise CommandError(f"training run #{run.pk} {run.state}")
        v = run.model_version
        self.stdout.write(json.dumps({"run": run.pk, "version": v.version, "status": v.status,
                                      "pairwise_accuracy": v.metrics.get("pairwise_accuracy"),
                                      "roc_auc": v.metrics.get("roc_auc"), "threshold": v.threshold}))
