"""The saliency metrics (S-measure, mean E-measure, weighted F-measure, MAE) against `pysodmetrics`, the field's
reference implementation (a port of the MATLAB evaluation code), per image and averaged over a set.

Inputs cover the benchmark path (uint8 prediction and ground truth, min-max normalised) and float maps without
normalisation, blobs and noise, empty and full ground truths, constant predictions and the S-measure's corner
cases (a one-pixel region; an empty region, where the reference returns NaN and vadapters a finite value).
"""

from __future__ import annotations

import numpy as np
import py_sod_metrics as sod
import pytest

from vadapters.metrics import saliency as M

ATOL = 1e-12


def _reference(pred: np.ndarray, gt: np.ndarray, normalize: bool = True) -> dict[str, float]:
    metrics = {"S": sod.Smeasure(), "E": sod.Emeasure(), "wF": sod.WeightedFmeasure(), "MAE": sod.MAE()}
    for metric in metrics.values():
        metric.step(pred=pred, gt=gt, normalize=normalize)
    return {
        "S": float(metrics["S"].get_results()["sm"]),
        "E": float(metrics["E"].get_results()["em"]["curve"].mean()),
        "wF": float(metrics["wF"].get_results()["wfm"]),
        "MAE": float(metrics["MAE"].get_results()["mae"]),
    }


def _ours(pred, gt, normalize: bool = True) -> dict[str, float]:
    return {
        "S": M.s_measure(pred, gt, normalize=normalize),
        "E": M.mean_e_measure(pred, gt, normalize=normalize),
        "wF": M.weighted_f_measure(pred, gt, normalize=normalize),
        "MAE": M.mae(pred, gt, normalize=normalize),
    }


def _case(index: int) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 prediction and ground truth: blobs with noisy, blurry, inverted or random predictions."""
    rng = np.random.default_rng(index)
    h, w = (int(v) for v in rng.integers(6, 48, size=2))
    yy, xx = np.mgrid[:h, :w]
    gt = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1.5, max(h, w) / 2)
        gt |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    kind = index % 4
    if kind == 0:
        pred = rng.random((h, w))
    elif kind == 1:
        pred = np.clip(gt * 0.8 + rng.normal(0, 0.25, (h, w)), 0, 1)
    elif kind == 2:
        pred = np.clip(1.0 - gt + rng.normal(0, 0.1, (h, w)), 0, 1)
    else:
        pred = np.clip(gt * rng.uniform(0.3, 1.0) + 0.2 * rng.random((h, w)), 0, 1)
    return (pred * 255).astype(np.uint8), gt.astype(np.uint8) * 255


@pytest.mark.parametrize("index", range(40))
def test_per_image_metrics_match_pysodmetrics(index):
    pred, gt = _case(index)
    if not (0 < (gt > 128).mean() < 1):
        gt[0, 0] = 255 - gt[0, 0]
    reference, ours = _reference(pred, gt), _ours(pred, gt)
    if np.isnan(reference["S"]):  # the documented corner case, covered below
        reference.pop("S")
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, abs=ATOL), name


@pytest.mark.parametrize(
    ("name", "gt_fill"),
    [("empty ground truth", 0), ("full ground truth", 255)],
)
def test_degenerate_ground_truths_match_pysodmetrics(name, gt_fill):
    rng = np.random.default_rng(7)
    gt = np.full((20, 30), gt_fill, np.uint8)
    for pred in ((rng.random((20, 30)) * 255).astype(np.uint8), np.full((20, 30), 77, np.uint8)):
        reference, ours = _reference(pred, gt), _ours(pred, gt)
        for metric, value in reference.items():
            assert ours[metric] == pytest.approx(value, abs=ATOL), (name, metric)


def test_constant_prediction_matches_pysodmetrics():
    pred, gt = _case(3)
    constant = np.full_like(pred, 200)
    reference, ours = _reference(constant, gt), _ours(constant, gt)
    for metric, value in reference.items():
        assert ours[metric] == pytest.approx(value, abs=ATOL), metric


def test_float_maps_without_normalisation_match_pysodmetrics():
    for index in range(8):
        pred, gt = _case(100 + index)
        prob, mask = pred.astype(np.float64) / 255.0, gt > 128
        reference, ours = _reference(prob, mask, normalize=False), _ours(prob, mask, normalize=False)
        for metric, value in reference.items():
            if not np.isnan(value):
                assert ours[metric] == pytest.approx(value, abs=ATOL), metric


def test_one_pixel_region_of_the_s_measure_matches_pysodmetrics():
    """Foreground centroid at (0, 0): the top-left region is one pixel, which the reference scores 1."""
    gt = np.zeros((12, 15), np.uint8)
    gt[0, 0] = gt[0, 1] = gt[1, 0] = 255
    pred = (np.random.default_rng(1).random((12, 15)) * 255).astype(np.uint8)
    reference = _reference(pred, gt)["S"]
    assert M.s_measure(pred, gt) == pytest.approx(reference, abs=ATOL)


def test_empty_region_of_the_s_measure_is_finite_where_the_reference_is_nan():
    """Foreground centroid on the last column: the right regions are empty. The reference multiplies their weight
    (0) by a NaN mean and returns NaN; vadapters counts them 0, which is the reference's value on the same image
    with any non-empty region of weight 0: the sum over the other regions."""
    gt = np.zeros((10, 12), np.uint8)
    gt[3:7, 11] = 255
    pred = (np.random.default_rng(2).random((10, 12)) * 255).astype(np.uint8)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        assert np.isnan(_reference(pred, gt)["S"])
    ours = M.s_measure(pred, gt)
    assert np.isfinite(ours) and 0.0 <= ours <= 1.0
    # the same value with the empty regions dropped: S-object and the two left regions only
    p, g = M.prepare(pred, gt)
    h, w = g.shape
    cy = int(np.round(np.nonzero(g)[0].mean())) + 1
    s_obj = g.mean() * M._object_score(p[g]) + (1 - g.mean()) * M._object_score(1.0 - p[~g])
    top, bottom = (slice(0, cy), slice(0, w)), (slice(cy, h), slice(0, w))
    s_reg = (cy / h) * M._ssim(p[top], g[top].astype(float)) + ((h - cy) / h) * M._ssim(p[bottom], g[bottom] * 1.0)
    assert ours == pytest.approx(0.5 * s_obj + 0.5 * s_reg, abs=ATOL)


def test_dataset_averages_match_pysodmetrics():
    """`SegmentationMetrics.compute()` over a set equals the reference accumulators' results."""
    metrics = {"S": sod.Smeasure(), "E": sod.Emeasure(), "wF": sod.WeightedFmeasure(), "MAE": sod.MAE()}
    ours = M.SegmentationMetrics()
    for index in range(200, 216):
        pred, gt = _case(index)
        if not (0 < (gt > 128).mean() < 1):
            continue
        for metric in metrics.values():
            metric.step(pred=pred, gt=gt)
        ours.update(pred, gt)
    result = ours.compute()
    assert result["n"] >= 12
    assert result["S"] == pytest.approx(metrics["S"].get_results()["sm"], abs=ATOL)
    assert result["E"] == pytest.approx(metrics["E"].get_results()["em"]["curve"].mean(), abs=ATOL)
    assert result["wF"] == pytest.approx(metrics["wF"].get_results()["wfm"], abs=ATOL)
    assert result["MAE"] == pytest.approx(metrics["MAE"].get_results()["mae"], abs=ATOL)
