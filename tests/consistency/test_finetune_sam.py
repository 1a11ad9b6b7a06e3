"""Fine-tuning SAM's mask decoder on corrected masks: a tiny random SAM written with
save_pretrained, trained, saved, and loaded back by the checker's segmenter. Random tiny encoders
carry too little information for the masks to become good; what is checked is that the decoder
(and only the decoder) learns, the targets land in SAM's frame, and the result serves."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from consistency.ml import SamBoxSegmenter  # noqa: E402
from consistency.ml.finetune import MaskExample, _target_in_mask_frame, finetune_mask_decoder  # noqa: E402

from .tiny_models import build_tiny_sam  # noqa: E402


def examples(n: int) -> list[MaskExample]:
    rng = np.random.default_rng(0)
    out = []
    yy, xx = np.mgrid[0:48, 0:64]
    for i in range(n):
        cy, cx, ry, rx = rng.integers(18, 30), rng.integers(24, 40), rng.integers(8, 16), rng.integers(10, 20)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        rgb = np.full((48, 64, 3), 230, np.uint8)
        rgb[mask] = rng.integers(0, 120, 3)
        out.append(MaskExample(rgb, mask, f"ellipse-{i}"))
    return out


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return str(build_tiny_sam(tmp_path_factory.mktemp("tiny_sam") / "sam", hidden=32))


def test_corrected_mask_lands_where_sam_sees_the_image():
    # a 48x64 photo is resized to 48x64 of a 64x64 padded input; SAM's logits cover that at 32x32
    mask = np.zeros((48, 64), bool)
    mask[:, 32:] = True  # the right half
    target = _target_in_mask_frame(mask, (48, 64), (64, 64), (32, 32))
    assert target.shape == (32, 32)
    assert target[:24, 16:].min() > 0.99 and target[:24, :16].max() < 0.01
    assert target[24:].max() == 0.0  # the padding below the photo is never product


def test_target_read_back_the_way_the_segmenter_reads_sam_masks_is_the_mask(tiny_sam):
    from consistency.ml.locate import _pil

    segmenter = SamBoxSegmenter(tiny_sam)
    example = examples(1)[0]
    inputs = segmenter.processor(images=_pil(example.rgb), return_tensors="pt")
    reshaped = tuple(int(v) for v in inputs["reshaped_input_sizes"][0])
    target = _target_in_mask_frame(example.mask, reshaped, tuple(inputs["pixel_values"].shape[-2:]), (32, 32))
    logits = torch.from_numpy((target - 0.5) * 20)[None, None, None]
    back = segmenter.processor.image_processor.post_process_masks(
        logits, inputs["original_sizes"], inputs["reshaped_input_sizes"])[0][0, 0].numpy()
    assert back.shape == example.mask.shape
    assert (back & example.mask).sum() / (back | example.mask).sum() > 0.9


def test_only_the_decoder_learns_and_the_saved_folder_serves(tiny_sam, tmp_path):
    report = finetune_mask_decoder(tiny_sam, examples(8), tmp_path / "tuned", epochs=12, learning_rate=1e-2)
    assert report["train"] == 6 and report["held_out"] == 2 and report["epochs"] == 12
    assert report["last_epoch_loss"] < report["first_epoch_loss"]
    assert 0.0 <= report["held_out_iou_before"] <= 1.0 and 0.0 <= report["held_out_iou_after"] <= 1.0
    tuned = SamBoxSegmenter(str(tmp_path / "tuned"))  # what STAGECRAFT_SAM_MODEL then points at
    seg = tuned.segment_box(examples(1)[0].rgb, (20, 10, 50, 40))
    assert seg.alpha.shape == (48, 64)
    base = SamBoxSegmenter(tiny_sam).model
    assert all(torch.equal(a, b) for a, b in zip(base.vision_encoder.parameters(), tuned.model.vision_encoder.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(base.prompt_encoder.parameters(), tuned.model.prompt_encoder.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(base.mask_decoder.parameters(), tuned.model.mask_decoder.parameters()))


def test_empty_or_misfitting_masks_are_refused(tiny_sam, tmp_path):
    good = examples(1)[0]
    with pytest.raises(ValueError, match="non-empty and the size of their photo: empty"):
        finetune_mask_decoder(tiny_sam, [MaskExample(good.rgb, np.zeros((48, 64), bool), "empty")], tmp_path / "x")
    with pytest.raises(ValueError, match="small"):
        finetune_mask_decoder(tiny_sam, [MaskExample(good.rgb, np.ones((24, 32), bool), "small")], tmp_path / "x")
    assert not (tmp_path / "x").exists()
