"""Fine-tune SAM's mask decoder on masks people corrected (published-model tier).

Only the mask decoder learns: the image encoder (most of SAM's weights) and the prompt encoder stay
frozen, so the image embeddings are computed once per photo and a few hundred corrections train on
a CPU in minutes. Each correction prompts SAM with the box of the corrected mask, as the checker
does, and the loss (binary cross-entropy + Dice) compares each of SAM's three low-resolution
masks with the corrected mask mapped into the same padded frame; the IoU head, which picks the mask
the segmenter serves, learns each mask's actual IoU. Plain Python (torch, transformers).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.ml.segmentation import as_rgb_uint8, mask_bbox

from .locate import SamBoxSegmenter, _pil


@dataclass
class MaskExample:
    """One corrected mask: the photo it was drawn on, the mask (HxW bool, the photo's frame)."""

    rgb: np.ndarray
    mask: np.ndarray
    name: str = ""


def box_prompt(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The box SAM is prompted with for a mask: its bounding box (the checker's prompts come from
    a detector's box around the product, which is what a tight mask box stands for)."""
    box = mask_bbox(mask)
    if box is None:
        raise ValueError("an empty mask has no box to prompt SAM with")
    return box


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def mean_box_iou(segmenter: SamBoxSegmenter, examples: list[MaskExample]) -> float:
    """Mean IoU of the segmenter's box-prompted masks against the corrected ones."""
    if not examples:
        return float("nan")
    return float(np.mean([mask_iou(segmenter.segment_box(e.rgb, box_prompt(e.mask)).mask, e.mask) for e in examples]))


def _target_in_mask_frame(mask: np.ndarray, reshaped: tuple[int, int], padded: tuple[int, int],
                          low_res: tuple[int, int]) -> np.ndarray:
    """The mask as SAM's low-resolution output sees it: resized like the image, padded at the
    bottom/right to the square input, then shrunk to the logits' size (soft at the edges)."""
    rh, rw = reshaped
    canvas = np.zeros(padded, np.float32)
    canvas[:rh, :rw] = cv2.resize(mask.astype(np.float32), (rw, rh), interpolation=cv2.INTER_AREA)
    return cv2.resize(canvas, (low_res[1], low_res[0]), interpolation=cv2.INTER_AREA)


def split_examples(examples: list[MaskExample], held_out_every: int = 4) -> tuple[list[MaskExample], list[MaskExample]]:
    """Deterministic split: every `held_out_every`-th example is held out (none when fewer than
    `held_out_every` examples)."""
    if len(examples) < held_out_every:
        return list(examples), []
    held = [e for i, e in enumerate(examples) if i % held_out_every == held_out_every - 1]
    train = [e for i, e in enumerate(examples) if i % held_out_every != held_out_every - 1]
    return train, held


def finetune_mask_decoder(model: str, examples: list[MaskExample], out_dir: Path, *, epochs: int = 20,
                          learning_rate: float = 1e-4, held_out_every: int = 4, seed: int = 0,
                          progress: Callable[[int, int], None] | None = None) -> dict:
    """Train SAM's mask decoder (`model`: hub id or local folder) on `examples` and write the
    fine-tuned model and its processor to `out_dir` (loadable by `SamBoxSegmenter(out_dir)`).

    Returns a report: examples used for training and held out, the loss of the first and last
    epoch, and the mean box-prompted IoU on the held-out examples before and after."""
    import torch

    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    if Path(out_dir).resolve() == Path(model).resolve():
        raise ValueError("the fine-tuned model must go to another folder than the base model it starts from")
    examples = [MaskExample(as_rgb_uint8(e.rgb), np.asarray(e.mask, bool), e.name) for e in examples]
    bad = [e.name or str(i) for i, e in enumerate(examples) if e.mask.shape != e.rgb.shape[:2] or not e.mask.any()]
    if bad:
        raise ValueError(f"masks must be non-empty and the size of their photo: {', '.join(bad)}")
    train, held = split_examples(examples, held_out_every)
    if not train:
        raise ValueError("no corrected masks to train on")
    torch.manual_seed(seed)
    base = SamBoxSegmenter(model)
    iou_before = mean_box_iou(base, held)
    sam, processor = base.model.eval(), base.processor
    sam.mask_decoder.train()
    for p in sam.parameters():
        p.requires_grad = False
    for p in sam.mask_decoder.parameters():
        p.requires_grad = True

    prepared = []  # (image embeddings, box prompt, target in SAM's mask frame): fixed, so made once
    with torch.no_grad():
        for e in train:
            inputs = processor(images=_pil(e.rgb), input_boxes=[[[float(v) for v in box_prompt(e.mask)]]],
                               return_tensors="pt")
            embeddings = sam.get_image_embeddings(inputs["pixel_values"])
            if not prepared:  # the size of SAM's low-resolution masks, the same for every image
                low_res = tuple(sam(image_embeddings=embeddings, input_boxes=inputs["input_boxes"],
                                    multimask_output=True).pred_masks.shape[-2:])
            target = torch.from_numpy(_target_in_mask_frame(
                e.mask, tuple(int(v) for v in inputs["reshaped_input_sizes"][0]),
                tuple(int(v) for v in inputs["pixel_values"].shape[-2:]), low_res))
            prepared.append((embeddings, inputs["input_boxes"], target))

    optimiser = torch.optim.AdamW(sam.mask_decoder.parameters(), lr=learning_rate)
    losses = []
    for epoch in range(epochs):
        total = 0.0
        for embeddings, boxes, target in prepared:
            # the segmenter serves the best-scored of SAM's three masks, so all three learn
            out = sam(image_embeddings=embeddings, input_boxes=boxes, multimask_output=True)
            logits = out.pred_masks[0, 0]
            targets = target.expand_as(logits)  # one per mask
            prob = torch.sigmoid(logits)
            dice = 1 - (2 * (prob * targets).sum((1, 2)) + 1) / (prob.sum((1, 2)) + targets.sum((1, 2)) + 1)
            # the IoU head learns each mask's real IoU: the segmenter serves the mask it scores best
            with torch.no_grad():
                hit, wanted = logits > 0, targets > 0.5
                iou = (hit & wanted).sum((1, 2)) / ((hit | wanted).sum((1, 2)) + 1e-6)
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, targets) + dice.mean()
                    + torch.nn.functional.mse_loss(out.iou_scores[0, 0], iou))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
        losses.append(total / len(prepared))
        if progress:
            progress(epoch + 1, epochs)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sam.eval().save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    iou_after = mean_box_iou(SamBoxSegmenter(str(out_dir)), held)
    return {"base_model": model, "train": len(train), "held_out": len(held), "epochs": epochs,
            "first_epoch_loss": losses[0], "last_epoch_loss": losses[-1],
            "held_out_iou_before": iou_before, "held_out_iou_after": iou_after}
