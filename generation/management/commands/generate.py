import json

from django.core.management.base import BaseCommand, CommandError

from generation import services
from generation.management.commands._common import get_project
from generation.ml.backends import BackendUnavailable, GenerationFailed
from generation.ml.inpaint import INPAINTER_NAMES
from generation.models import GenerationJob


class Command(BaseCommand):
    help = "Generate staged ads for one product or every product of a project (runs here, recorded as a job)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project name or slug")
        parser.add_argument("--product", type=int, help="product id (default: every product)")
        parser.add_argument("--backend", action="append", help="backend name (repeatable; default copy-paste)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--candidates", type=int, default=3)
        parser.add_argument("--params", default="{}", help='backend params as a JSON object, e.g. \'{"scale": 0.9}\'')
        parser.add_argument("--inpainter", choices=INPAINTER_NAMES, default="auto",
                            help="copy-paste's inpainter (wbl: the project's newest trained WBL model)")
        parser.add_argument("--no-parallax", action="store_true", help="skip the parallax video")

    def handle(self, project, product, backend, seed, candidates, params, inpainter, no_parallax, **options):
        proj = get_project(project)
        prod = None
        if product is not None:
            prod = proj.products.filter(pk=product).first()
            if prod is None:
                raise CommandError(f"project {proj.name!r} has no product {product}")
        try:
            params = json.loads(params)
        except ValueError as exc:
            raise CommandError(f"--params is not valid JSON: {exc}")
        if not isinstance(params, dict):
            raise CommandError("--params must be a JSON object")
        backends = backend or [services.DEFAULT_BACKEND]
        try:
            params = services.with_inpainter(params, backends, inpainter)
            job = services.create_generation_job(proj, product=prod, backends=backends,
                                                 seed=seed, num_candidates=candidates, params=params,
                                                 with_parallax=not no_parallax)
        except (BackendUnavailable, GenerationFailed, ValueError, TypeError) as exc:
            raise CommandError(str(exc))
        job = services.run_generation_job(job.pk, echo=self.stdout.write)
        if job.state != GenerationJob.State.SUCCEEDED:
            raise CommandError(f"job #{job.pk} failed (see the log above)")
        self.stdout.write(self.style.SUCCESS(f"job #{job.pk}: {job.counts}"))
