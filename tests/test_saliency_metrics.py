"""Saliency / shadow / polyp metrics against an independent, deliberately naive reference written here from the
published formulas (Fan et al. 2017 S-measure, Fan et al. 2018 E-measure, Margolin et al. 2014 weighted F).

The oracle below recomputes every quantity pixel by pixel and threshold by threshold instead of with histograms.
The field's reference implementation, `pysodmetrics`, is the oracle of `tests/test_saliency_pysodmetrics.py`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vadapters.errors import BadInputError
from vadapters.metrics import saliency as M

EPS = np.spacing(1)


# ----------------------------------------------------------------------------------------- naive reference
def ref_prepare(pred, gt):
    pred = pred.astype(np.float64)
    if pred.max() > pred.min():
        pred = (pred - pred.min()) / (pred.max() - pred.min())
    return pred, gt.astype(bool)


def ref_s_measure(pred, gt, alpha=0.5):
    pred, gt = ref_prepare(pred, gt)
    h, w = gt.shape
    frac = gt.mean()
    if frac == 0:
        return 1 - pred.mean()
    if frac == 1:
        return pred.mean()

    def obj(values):
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        return 2 * mean / (mean**2 + 1 + std + EPS)

    fg = [pred[i, j] for i in range(h) for j in range(w) if gt[i, j]]
    bg = [1 - pred[i, j] for i in range(h) for j in range(w) if not gt[i, j]]
    s_object = frac * obj(fg) + (1 - frac) * obj(bg)
    rows, cols = np.nonzero(gt)
    y, x = round(float(rows.mean())) + 1, round(float(cols.mean())) + 1
    score = 0.0
    for r0, r1 in ((0, y), (y, h)):
        for c0, c1 in ((0, x), (x, w)):
            p, g = pred[r0:r1, c0:c1].ravel(), gt[r0:r1, c0:c1].ravel().astype(float)
            n = p.size
            if n == 0:
                continue
            mp, mg = p.mean(), g.mean()
            cov = np.dot(p - mp, g - mg) / (n - 1 + EPS)
            vp, vg = np.dot(p - mp, p - mp) / (n - 1 + EPS), np.dot(g - mg, g - mg) / (n - 1 + EPS)
            num, den = 4 * mp * mg * cov, (mp**2 + mg**2) * (vp + vg)
            q = num / (den + EPS) if num != 0 else (1.0 if den == 0 else 0.0)
            score += n / (h * w) * q
    return max(0.0, alpha * s_object + (1 - alpha) * score)


def ref_e_curve(pred, gt):
    pred, gt = ref_prepare(pred, gt)
    q = (pred * 255).astype(np.uint8)
    g = gt.astype(float)
    curve = []
    for t in range(256):
        fm = (q >= t).astype(float)
        if g.sum() == 0:
            enhanced = 1 - fm
        elif g.sum() == g.size:
            enhanced = fm
        else:
            a, b = fm - fm.mean(), g - g.mean()
            xi = 2 * a * b / (a * a + b * b + EPS)
            enhanced = (xi + 1) ** 2 / 4
        curve.append(enhanced.sum() / (g.size - 1 + EPS))
    return np.array(curve)


def ref_weighted_f(pred, gt, beta2=1.0):
    from scipy.ndimage import distance_transform_edt

    pred, gt = ref_prepare(pred, gt)
    if not gt.any():
        return 0.0
    h, w = gt.shape
    dist, idx = distance_transform_edt(~gt, return_indices=True)
    e = np.abs(pred - gt)
    et = e.copy()
    for i in range(h):
        for j in range(w):
            if not gt[i, j]:
                et[i, j] = e[idx[0][i, j], idx[1][i, j]]
    k = np.array([[math.exp(-(a * a + b * b) / 50.0) for b in range(-3, 4)] for a in range(-3, 4)])
    k /= k.sum()
    padded = np.pad(et, 3)
    ea = np.array([[(padded[i : i + 7, j : j + 7] * k).sum() for j in range(w)] for i in range(h)])
    total_fg = tp = fp = err_fg = 0.0
    for i in range(h):
        for j in range(w):
            if gt[i, j]:
                value = min(e[i, j], ea[i, j])
                total_fg += 1
                err_fg += value
            else:
                fp += e[i, j] * (2 - math.exp(math.log(0.5) / 5 * dist[i, j]))
    tp = total_fg - err_fg
    recall = 1 - err_fg / total_fg
    precision = tp / (tp + fp + EPS)
    return (1 + beta2) * recall * precision / (recall + beta2 * precision + EPS)


# -------------------------------------------------------------------------------------------------- inputs
def _blob(rng, h=20, w=24):
    yy, xx = np.mgrid[:h, :w]
    cy, cx, r = rng.uniform(5, h - 5), rng.uniform(5, w - 5), rng.uniform(3, 7)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _pairs():
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(5):
        gt = _blob(rng)
        noise = rng.random(gt.shape)
        pred = np.clip(0.6 * gt + 0.5 * noise - 0.1 * i, 0, 1) if i % 2 == 0 else noise
        pairs.append((pred, gt))
    pairs.append((rng.random((20, 24)), np.zeros((20, 24), bool)))  # empty ground truth
    pairs.append((rng.random((20, 24)), np.ones((20, 24), bool)))  # full ground truth
    return pairs


PAIRS = _pairs()


@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_metrics_match_the_naive_reference_on_random_maps(index):
    pred, gt = PAIRS[index]
    assert M.s_measure(pred, gt) == pytest.approx(ref_s_measure(pred, gt), abs=1e-10)
    np.testing.assert_allclose(M.e_measure_curve(pred, gt), ref_e_curve(pred, gt), atol=1e-10)
    assert M.mean_e_measure(pred, gt) == pytest.approx(ref_e_curve(pred, gt).mean(), abs=1e-10)
    assert M.weighted_f_measure(pred, gt) == pytest.approx(ref_weighted_f(pred, gt), abs=1e-10)
    assert M.weighted_f_measure(pred, gt, beta2=0.3) == pytest.approx(ref_weighted_f(pred, gt, 0.3), abs=1e-10)
    p, _ = ref_prepare(pred, gt)
    assert M.mae(pred, gt) == pytest.approx(np.abs(p - gt).mean(), abs=1e-12)


def test_perfect_prediction():
    gt = _blob(np.random.default_rng(3))
    perfect = gt.astype(float)
    n = gt.size
    assert M.s_measure(perfect, gt) == pytest.approx(1.0, abs=1e-12)
    assert M.mae(perfect, gt) == 0.0
    curve = M.e_measure_curve(perfect, gt)
    np.testing.assert_allclose(curve[1:], n / (n - 1), rtol=1e-12)  # (H*W - 1) denominator
    assert curve[0] == pytest.approx(n / 4 / (n - 1))  # threshold 0 marks everything foreground
    assert M.weighted_f_measure(perfect, gt) == pytest.approx(1.0, abs=1e-12)
    assert M.dice(perfect, gt) == M.iou(perfect, gt) == 1.0
    assert M.ber(perfect, gt) == 0.0


def test_inverted_prediction_is_bad_and_normalisation_is_minmax():
    gt = _blob(np.random.default_rng(4))
    assert M.s_measure(1.0 - gt, gt) < 0.2
    assert M.mae(1.0 - gt, gt) == 1.0
    pred = np.random.default_rng(5).random(gt.shape)
    assert M.s_measure(0.2 + 0.5 * pred, gt) == pytest.approx(M.s_measure(pred, gt))  # mapminmax
    assert M.mae(0.5 * pred, gt, normalize=False) != M.mae(0.5 * pred, gt)
    as_uint8 = (pred * 255).round().astype(np.uint8)
    assert M.mae(as_uint8, gt) == pytest.approx(M.mae(as_uint8 / 255.0, gt))


def test_ber_dataset_and_per_image_modes_by_hand():
    g1 = np.array([[1, 1, 0, 0]], bool)
    p1 = np.array([[1.0, 0.0, 0.0, 0.0]])  # TP 1 FN 1 TN 2 FP 0 -> (50 + 0) / 2 = 25
    g2 = np.array([[1, 0, 0, 0, 0, 0, 0, 0]], bool)
    p2 = np.array([[1.0, 1, 1, 1, 0, 0, 0, 0]])  # TP 1 FN 0 TN 4 FP 3 -> (0 + 300/7) / 2
    assert M.ber(p1, g1) == pytest.approx(25.0)
    assert M.ber([p1, p2], [g1, g2], mode="per_image") == pytest.approx((25.0 + 150 / 7) / 2)
    # dataset: TP 2 FN 1 TN 6 FP 3 -> (100/3 + 100 * 3/9) / 2
    assert M.ber([p1, p2], [g1, g2], mode="dataset") == pytest.approx((100 / 3 + 100 / 3) / 2)
    no_shadow = np.zeros((1, 4), bool)
    assert M.ber([p1, p1], [g1, no_shadow], mode="per_image") == pytest.approx(25.0)  # undefined image skipped
    assert M.ber(np.array([[126 / 255, 124 / 255]]), np.array([[1, 0]], bool)) == 0.0  # threshold 125/255
    with pytest.raises(BadInputError, match="mode"):
        M.ber(p1, g1, mode="sum")


def test_dice_iou_by_hand_and_accumulator():
    gt = np.array([[1, 1, 1, 0]], bool)
    pred = np.array([[0.9, 0.6, 0.2, 0.7]])  # P = {0, 1, 3}: |P&G| = 2
    assert M.dice(pred, gt) == pytest.approx(4 / 6)
    assert M.iou(pred, gt) == pytest.approx(2 / 4)
    metrics = M.SegmentationMetrics()
    rows = [metrics.update(p, g) for p, g in PAIRS[:3]]
    out = metrics.compute()
    assert out["n"] == 3 and out["S"] == pytest.approx(np.mean([r["S"] for r in rows]))
    assert out["BER"] == pytest.approx(M.ber([p for p, _ in PAIRS[:3]], [g for _, g in PAIRS[:3]]))
    with pytest.raises(BadInputError, match="shape"):
        M.mae(np.zeros((3, 3)), np.zeros((3, 4), bool))
    with pytest.raises(BadInputError, match="2-D"):
        M.s_measure(np.zeros((2, 3, 3)), np.zeros((2, 3, 3), bool))
