"""manage.py finetune_segmenter --project NAME --out DIR [--base SAM] [--epochs N]"""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from consistency import services
from core.models import Project


class Command(BaseCommand):
    help = ("Fine-tune the published SAM's mask decoder on the project's corrected masks and write the "
            "model to --out; point STAGECRAFT_SAM_MODEL at it, then re-check and recalibrate.")

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project name or slug")
        parser.add_argument("--out", required=True, help="folder for the fine-tuned model (created)")
        parser.add_argument("--base", help="SAM to start from: local folder or hub id (default: STAGECRAFT_SAM_MODEL)")
        parser.add_argument("--epochs", type=int, default=20)

    def handle(self, *args, project, out, base=None, epochs=20, **options):
        try:
            proj = Project.objects.get(Q(name=project) | Q(slug=project))
        except Project.DoesNotExist:
            raise CommandError(f"no project named {project!r}")
        if epochs < 1:
            raise CommandError("--epochs must be at least 1")
        try:
            report = services.finetune_segmenter(proj, Path(out), base_model=base, epochs=epochs,
                                                 log_fn=self.stdout.write)
        except (services.CalibrationError, ValueError, OSError) as exc:
            # a wrong --base folder, a hub id not in the local cache, a folder clash: say it plainly
            raise CommandError(str(exc))
        self.stdout.write(json.dumps(report, indent=1))
        self.stdout.write(self.style.SUCCESS(f"fine-tuned segmenter written to {out}"))
