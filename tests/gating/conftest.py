import pytest

from core.ml.images import load_rgb
from core.models import Product
from core.services.storage import store_pixels
from generation.models import Generation


@pytest.fixture
def make_ad(demo_project, sample_dir):
    """A stored generated ad (a real stage photo) for a demo product, with given scores."""
    stages = sorted((sample_dir / "stages").glob("*.jpg"))
    counter = {"n": 0}

    def make(*, reward=None, consistent=None, reasons=(), backend="copy-paste", product=None, gate="pending"):
        counter["n"] += 1
        stored = store_pixels(load_rgb(stages[counter["n"] % len(stages)])[::4, ::4])
        return Generation.objects.create(
            product=product or Product.objects.filter(project=demo_project).order_by("id").first(),
            backend=backend, backend_version="1.0.0", params_hash=f"h{counter['n']}", seed=counter["n"],
            status="succeeded", image=stored.name, sha256=stored.decoded.sha256,
            width=stored.decoded.width, height=stored.decoded.height, reward_score=reward,
            consistency_passed=consistent,
            consistency={"reasons": list(reasons), "metrics": {}} if consistent is not None else None,
            gate_status=gate,
        )

    return make
