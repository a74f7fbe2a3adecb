"""The saliency metrics (S-measure, mean E-measure, weighted F-measure, MAE) against `pysodmetrics`, the field's
reference implementation (a port of the MATLAB evaluation code), per image and averaged over a set.

Inputs cover the benchmark path (uint8 prediction and ground truth, min-max normalised) and float maps without
normalisation, blobs and noise, empty and full ground truths, constant predictions and the S-measure's corner
cases (a one-pixel region; an empty region, where the reference returns NaN and vadapters a finite value).
"""

from __future__ import annotations

import numpy as np
import pytest
from parity_cases import PYSOD_TOLERANCE, pysod_case, pysod_dataset, pysod_image, pysod_ours, pysod_reference

from vadapters.metrics import saliency as M

ATOL = PYSOD_TOLERANCE


@pytest.mark.parametrize("index", range(40))
def test_per_image_metrics_match_pysodmetrics(index):
    """A one-sided ground truth gets one pixel flipped; an S-measure the reference leaves NaN is covered below."""
    diffs = pysod_image(index)
    assert {"E", "wF", "MAE"} <= set(diffs)
    for name, diff in diffs.items():
        assert diff <= ATOL, name


@pytest.mark.parametrize(
    ("name", "gt_fill"),
    [("empty ground truth", 0), ("full ground truth", 255)],
)
def test_degenerate_ground_truths_match_pysodmetrics(name, gt_fill):
    rng = np.random.default_rng(7)
    gt = np.full((20, 30), gt_fill, np.uint8)
    for pred in ((rng.random((20, 30)) * 255).astype(np.uint8), np.full((20, 30), 77, np.uint8)):
        reference, ours = pysod_reference(pred, gt), pysod_ours(pred, gt)
        for metric, value in reference.items():
            assert ours[metric] == pytest.approx(value, abs=ATOL), (name, metric)


def test_constant_prediction_matches_pysodmetrics():
    pred, gt = pysod_case(3)
    constant = np.full_like(pred, 200)
    reference, ours = pysod_reference(constant, gt), pysod_ours(constant, gt)
    for metric, value in reference.items():
        assert ours[metric] == pytest.approx(value, abs=ATOL), metric


def test_float_maps_without_normalisation_match_pysodmetrics():
    for index in range(8):
        pred, gt = pysod_case(100 + index)
        prob, mask = pred.astype(np.float64) / 255.0, gt > 128
        reference, ours = pysod_reference(prob, mask, normalize=False), pysod_ours(prob, mask, normalize=False)
        for metric, value in reference.items():
            if not np.isnan(value):
                assert ours[metric] == pytest.approx(value, abs=ATOL), metric


def test_one_pixel_region_of_the_s_measure_matches_pysodmetrics():
    """Foreground centroid at (0, 0): the top-left region is one pixel, which the reference scores 1."""
    gt = np.zeros((12, 15), np.uint8)
    gt[0, 0] = gt[0, 1] = gt[1, 0] = 255
    pred = (np.random.default_rng(1).random((12, 15)) * 255).astype(np.uint8)
    reference = pysod_reference(pred, gt)["S"]
    assert M.s_measure(pred, gt) == pytest.approx(reference, abs=ATOL)


def test_empty_region_of_the_s_measure_is_finite_where_the_reference_is_nan():
    """Foreground centroid on the last column: the right regions are empty. The reference multiplies their weight
    (0) by a NaN mean and returns NaN; vadapters counts them 0, which is the reference's value on the same image
    with any non-empty region of weight 0: the sum over the other regions."""
    gt = np.zeros((10, 12), np.uint8)
    gt[3:7, 11] = 255
    pred = (np.random.default_rng(2).random((10, 12)) * 255).astype(np.uint8)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        assert np.isnan(pysod_reference(pred, gt)["S"])
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
    diffs = pysod_dataset(range(200, 216))
    assert diffs.pop("n") >= 12
    for name, diff in diffs.items():
        assert diff <= ATOL, name
