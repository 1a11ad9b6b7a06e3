from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)  # a loaded, shared 2-core machine
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory):
    from tests.rewardmodel.tiny_blip import write_tiny_blip

    return write_tiny_blip(tmp_path_factory.mktemp("tiny_blip"))


@pytest.fixture(scope="session")
def small_encoder():
    """The real EfficientNet-Lite0 with its shipped ImageNet weights, at 128 px to keep tests fast."""
    from core.ml.embeddings import EfficientNetLiteEncoder

    return EfficientNetLiteEncoder("lite0", image_size=128)
