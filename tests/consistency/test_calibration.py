"""Calibrated decision: fit on metric rows, evaluate on held-out rows, JSON round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from consistency.ml.calibration import (
    CalibratedModel,
    calibration_from_json,
    calibration_to_json,
    evaluate,
    fit_calibration,
    load_calibration,
    save_calibration,
)


def rows_and_labels(n, seed):
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for i in range(n):
        altered = i % 2 == 1
        rows.append({
            "area_change": rng.normal(0.2 if altered else 0.0, 0.05),
            "iou": rng.normal(0.85 if altered else 0.96, 0.03),
            "expansion": abs(rng.normal(0.1 if altered else 0.02, 0.03)),
            "shrinkage": abs(rng.normal(0.02, 0.01)),
            "boundary_f": rng.normal(0.8, 0.1),
            "ssim": rng.normal(0.9, 0.05),
            "delta_e_mean_colour": abs(rng.normal(1.0, 0.5)),
            "delta_e_median": abs(rng.normal(2.0, 0.5)),
            "colour_changed_fraction": abs(rng.normal(0.01, 0.01)),
            "edge_difference": rng.normal(0.2, 0.05),
        })
        labels.append(altered)
    return rows, labels


def test_fit_and_evaluate_on_held_out_rows():
    train_rows, train_y = rows_and_labels(80, 0)
    test_rows, test_y = rows_and_labels(40, 1)
    model = fit_calibration(train_rows, train_y, target_false_alarm=0.05)
    report = evaluate(model, test_rows, test_y)
    assert report["roc_auc"] > 0.95
    assert report["recall"] > 0.8 and report["precision"] > 0.8
    assert report["false_alarm_rate"] <= 0.1
    assert model.train_metrics["false_alarm_rate"] <= 0.05  # threshold picked for the target


def test_json_round_trip_and_rejects_garbage(tmp_path):
    rows, y = rows_and_labels(40, 2)
    model = fit_calibration(rows, y)
    path = tmp_path / "cal.json"
    save_calibration(model, path)
    json.loads(path.read_text())  # plain JSON, no pickle
    again = load_calibration(path)
    np.testing.assert_allclose(again.predict_proba(rows), model.predict_proba(rows))
    assert calibration_from_json(calibration_to_json(model)).threshold == model.threshold
    with pytest.raises(ValueError):
        CalibratedModel.from_dict({"format": "something-else"})
    with pytest.raises(ValueError):
        fit_calibration(rows[:3], y[:3])


def test_missing_metrics_count_as_altered():
    rows, y = rows_and_labels(60, 3)
    model = fit_calibration(rows, y)
    p_missing = model.predict_proba([{"area_change": None}])[0]
    assert p_missing > 0.5
