"""Estimate the similarity transform (scale, rotation, translation) taking the original product
onto the generated one, so that a backend that moved or rescaled the product is compared fairly.

Two stages: image moments of the masks (centroid, sqrt of the area ratio, principal-axis angle)
give a robust start; ECC (OpenCV `findTransformECC`, Euclidean motion + scale from moments) refines
it on the image content and is kept only when it improves the mask overlap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Similarity:
    scale: float = 1.0
    angle_deg: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    method: str = "identity"

    def matrix(self) -> np.ndarray:
        a = math.radians(self.angle_deg)
        c, s = self.scale * math.cos(a), self.scale * math.sin(a)
        return np.array([[c, -s, self.tx], [s, c, self.ty]], dtype=np.float64)

    @classmethod
    def from_matrix(cls, m: np.ndarray, method: str) -> "Similarity":
        scale = float(math.sqrt(abs(np.linalg.det(m[:, :2]))))
        angle = float(math.degrees(math.atan2(m[1, 0], m[0, 0])))
        return cls(scale, angle, float(m[0, 2]), float(m[1, 2]), method)

    def to_dict(self) -> dict:
        return {"scale": self.scale, "angle_deg": self.angle_deg, "tx": self.tx, "ty": self.ty, "method": self.method}


def _moments(mask: np.ndarray):
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    if m["m00"] <= 0:
        return None
    cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
    angle = 0.5 * math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"])
    elong = math.hypot(m["mu20"] - m["mu02"], 2 * m["mu11"]) / max(m["mu20"] + m["mu02"], 1e-9)
    return m["m00"], cx, cy, angle, elong


def moments_similarity(m_src: np.ndarray, m_dst: np.ndarray, allow_rotation: bool = False) -> Similarity:
    a, b = _moments(m_src), _moments(m_dst)
    if a is None or b is None:
        return Similarity()
    scale = math.sqrt(b[0] / a[0])
    angle = 0.0
    if allow_rotation and a[4] > 0.2 and b[4] > 0.2:  # orientation is only defined for elongated shapes
        angle = math.degrees(b[3] - a[3])
        angle = (angle + 90) % 180 - 90
    r = math.radians(angle)
    c, s = scale * math.cos(r), scale * math.sin(r)
    tx = b[1] - (c * a[1] - s * a[2])
    ty = b[2] - (s * a[1] + c * a[2])
    return Similarity(scale, angle, tx, ty, "moments")


def warp_affine(image: np.ndarray, matrix: np.ndarray, shape: tuple[int, int], nearest: bool = False,
                border_value=0) -> np.ndarray:
    """`image` (bool masks too) mapped by a 2x3 affine into an HxW frame."""
    h, w = shape
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    src = image.astype(np.uint8) if image.dtype == bool else image
    out = cv2.warpAffine(src, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
    return out.astype(bool) if image.dtype == bool else out


def warp(image: np.ndarray, sim: Similarity, shape: tuple[int, int], nearest: bool = False, border_value=0) -> np.ndarray:
    return warp_affine(image, sim.matrix(), shape, nearest, border_value)


def _iou(a, b):
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 0.0


def appearance_score(img_src, m_src, img_dst, m_dst, sim: Similarity) -> float:
    """Normalised cross-correlation of grey levels inside the overlap after warping (−1..1)."""
    ws = warp(m_src, sim, m_dst.shape, nearest=True)
    region = cv2.erode((ws & m_dst).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if region.sum() < 32:
        return -1.0
    a = cv2.cvtColor(warp(img_src, sim, m_dst.shape), cv2.COLOR_RGB2GRAY)[region].astype(np.float64)
    b = cv2.cvtColor(img_dst, cv2.COLOR_RGB2GRAY)[region].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    d = math.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def estimate_similarity(img_src: np.ndarray, m_src: np.ndarray, img_dst: np.ndarray, m_dst: np.ndarray,
                        allow_rotation: bool = False, refine: bool = True) -> Similarity:
    """Transform taking the source product (original) onto the destination (generated) product."""
    init = moments_similarity(m_src, m_dst, allow_rotation)
    if not refine or m_src.sum() < 64 or m_dst.sum() < 64:
        return init
    best, best_iou = init, _iou(warp(m_src, init, m_dst.shape, nearest=True), m_dst)
    best_app = appearance_score(img_src, m_src, img_dst, m_dst, init)
    try:
        g_src = cv2.cvtColor(img_src, cv2.COLOR_RGB2GRAY).astype(np.float32)
        g_dst = cv2.cvtColor(img_dst, cv2.COLOR_RGB2GRAY).astype(np.float32)
    except cv2.error:
        return best
    # ECC maps template coordinates -> input coordinates: template = dst, input = src, so it
    # estimates the inverse of our transform; start from the inverse of the current estimate.
    region = cv2.dilate(m_dst.astype(np.uint8), np.ones((5, 5), np.uint8))
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    start = init
    for motion, label in ((cv2.MOTION_TRANSLATION, "moments+ecc-translation"), (cv2.MOTION_AFFINE, "moments+ecc-affine")):
        try:
            inv = cv2.invertAffineTransform(start.matrix()).astype(np.float32)
            _, inv_ref = cv2.findTransformECC(g_dst, g_src, inv, motion, criteria, region, 3)
        except cv2.error:
            continue
        cand = Similarity.from_matrix(cv2.invertAffineTransform(inv_ref), label)
        if abs(cand.angle_deg) > 3 and not allow_rotation:
            continue
        if not 0.67 * init.scale < cand.scale < 1.5 * init.scale:
            continue
        cand_iou = _iou(warp(m_src, cand, m_dst.shape, nearest=True), m_dst)
        cand_app = appearance_score(img_src, m_src, img_dst, m_dst, cand)
        if cand_iou >= best_iou - 0.05 and cand_app > best_app:
            best, best_app = cand, cand_app
            start = cand
    return best
