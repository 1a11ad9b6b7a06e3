"""Calibrated decision over the checker's metrics: fit, evaluate, save/load as JSON (no pickle).

Pure functions, meant to be called by a Celery task (written elsewhere) on labelled review data:

    model = fit_calibration(rows, labels)                 # rows: list of metric dicts (ConsistencyResult.metric_row())
    report = evaluate(model, held_out_rows, held_out_labels)
    save_calibration(model, "calibration.json"); model = load_calibration("calibration.json")
    checker = ConsistencyChecker(calibrated=model)

Label convention: 1 / True = the product was altered (the ad must not go live), 0 = consistent.
The model is a standardised logistic regression over a fixed list of features derived from the
metrics (|area change|, 1 − IoU, expansion, …); its decision threshold is picked on the training
rows to keep the false-alarm rate at or under `target_false_alarm`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "stagecraft.consistency.calibration/1"

# feature name -> (metric, transform); every feature grows with "more altered"
FEATURES: dict[str, tuple[str, str]] = {
    "abs_area_change": ("area_change", "abs"),
    "one_minus_iou": ("iou", "one_minus"),
    "expansion": ("expansion", "identity"),
    "shrinkage": ("shrinkage", "identity"),
    "one_minus_boundary_f": ("boundary_f", "one_minus"),
    "one_minus_ssim": ("ssim", "one_minus"),
    "delta_e_mean_colour": ("delta_e_mean_colour", "identity"),
    "delta_e_median": ("delta_e_median", "identity"),
    "colour_changed_fraction": ("colour_changed_fraction", "identity"),
    "edge_difference": ("edge_difference", "identity"),
    "mismatch_fraction": ("mismatch_fraction", "identity"),
    "detail_loss": ("detail_loss", "identity"),
}


def featurize(rows: list[dict], feature_names: list[str] | None = None) -> np.ndarray:
    names = feature_names or list(FEATURES)
    x = np.zeros((len(rows), len(names)), np.float64)
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            metric, how = FEATURES[name]
            v = row.get(metric)
            v = float("nan") if v is None else float(v)
            if how == "abs":
                v = abs(v)
            elif how == "one_minus":
                v = 1.0 - v
            # missing / non-finite metrics (e.g. product missing) count as "very altered"
            x[i, j] = v if math.isfinite(v) else 10.0
    return np.clip(x, -10.0, 10.0)


@dataclass
class CalibratedModel:
    feature_names: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    threshold: float = 0.5  # probability of "altered" at or above which the pair fails
    train_metrics: dict = field(default_factory=dict)

    def decision_function(self, rows: list[dict]) -> np.ndarray:
        x = (featurize(rows, self.feature_names) - np.asarray(self.mean)) / np.asarray(self.scale)
        return x @ np.asarray(self.coef) + self.intercept

    def predict_proba(self, rows: list[dict]) -> np.ndarray:
        """Probability that each pair was altered."""
        z = np.clip(self.decision_function(rows), -50, 50)
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, rows: list[dict]) -> np.ndarray:
        """True where the pair should fail (altered)."""
        return self.predict_proba(rows) >= self.threshold

    def to_dict(self) -> dict:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "CalibratedModel":
        if d.get("format") != FORMAT:
            raise ValueError(f"not a consistency calibration file (format {d.get('format')!r})")
        unknown = [n for n in d["feature_names"] if n not in FEATURES]
        if unknown:
            raise ValueError(f"unknown features in calibration: {unknown}")
        n = len(d["feature_names"])
        if not (len(d["mean"]) == len(d["scale"]) == len(d["coef"]) == n):
            raise ValueError("calibration arrays do not match the feature list")
        return cls(list(d["feature_names"]), [float(v) for v in d["mean"]], [float(v) for v in d["scale"]],
                   [float(v) for v in d["coef"]], float(d["intercept"]), float(d.get("threshold", 0.5)),
                   dict(d.get("train_metrics", {})))


def _threshold_for_false_alarm(p_neg: np.ndarray, target: float) -> float:
    """Smallest probability threshold whose false-alarm rate on the negatives is <= target."""
    if p_neg.size == 0:
        return 0.5
    s = np.sort(p_neg)[::-1]
    k = int(math.floor(target * s.size))  # at most k negatives may be at or above the threshold
    if k >= s.size:
        return float(s[-1])
    return float(min(max(s[k] + 1e-9, 1e-6), 1 - 1e-9))


def fit_calibration(rows: list[dict], labels, feature_names: list[str] | None = None, c: float = 1.0,
                    target_false_alarm: float | None = 0.05, class_weight: str | None = "balanced") -> CalibratedModel:
    """Fit a logistic regression on metric rows; labels 1/True = altered."""
    from sklearn.linear_model import LogisticRegression

    names = list(feature_names or FEATURES)
    y = np.asarray(labels, dtype=int)
    if len(rows) != y.size:
        raise ValueError("rows and labels differ in length")
    if y.size < 4 or len(set(y.tolist())) < 2:
        raise ValueError("need at least 4 labelled rows with both classes to calibrate")
    x = featurize(rows, names)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    clf = LogisticRegression(C=c, class_weight=class_weight, max_iter=2000)
    clf.fit((x - mean) / scale, y)
    model = CalibratedModel(names, mean.tolist(), scale.tolist(), clf.coef_[0].tolist(), float(clf.intercept_[0]))
    if target_false_alarm is not None:
        p = model.predict_proba(rows)
        model.threshold = _threshold_for_false_alarm(p[y == 0], target_false_alarm)
    model.train_metrics = evaluate(model, rows, y)
    return model


def evaluate(model: CalibratedModel, rows: list[dict], labels) -> dict:
    """Precision, recall, false-alarm rate, accuracy and ROC-AUC of `model` on labelled rows."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=int)
    p = model.predict_proba(rows)
    pred = p >= model.threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    out = {
        "n": int(y.size),
        "positives": int((y == 1).sum()),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "false_alarm_rate": fp / (fp + tn) if fp + tn else None,
        "accuracy": (tp + tn) / y.size if y.size else None,
        "roc_auc": float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None,
        "threshold": model.threshold,
    }
    return out


def save_calibration(model: CalibratedModel, path: str | Path) -> None:
    Path(path).write_text(json.dumps(model.to_dict(), indent=2))


def load_calibration(path: str | Path) -> CalibratedModel:
    return CalibratedModel.from_dict(json.loads(Path(path).read_text()))


def calibration_to_json(model: CalibratedModel) -> str:
    return json.dumps(model.to_dict())


def calibration_from_json(text: str) -> CalibratedModel:
    return CalibratedModel.from_dict(json.loads(text))


calibrate = fit_calibration  # the name used in the issue
