"""Binary-segmentation metrics with the exact definitions of the camouflage / shadow / polyp literature.

* S-measure (Fan et al., ICCV 2017), mean E-measure (Fan et al., IJCAI 2018), weighted F-measure (Margolin et al.,
  CVPR 2014) and MAE, computed as in the MATLAB reference code and PySODMetrics (the field's reference, the
  tests' oracle; they agree to 1e-12): the prediction is min-max normalised per image (`mapminmax`) and the
  ground truth binarised. One documented difference: where the foreground centroid falls on the last row or
  column, a region of the S-measure is empty and the reference returns NaN; here that empty region counts 0;
* BER for shadows, per image (as SAM-Adapter's code) or accumulated over the dataset (as usual), in percent;
* Dice and IoU at a 0.5 threshold (polyp convention), averaged per image.

Example:
    >>> import numpy as np
    >>> gt = np.zeros((32, 32), bool); gt[8:20, 10:24] = True
    >>> round(s_measure(gt.astype(float), gt), 6), mae(gt.astype(float), gt)
    (1.0, 0.0)
    >>> m = SegmentationMetrics()
    >>> _ = m.update(gt.astype(float), gt)
    >>> r = m.compute(); round(r["S"], 4), round(r["E"], 2), round(r["wF"], 4), r["BER"]
    (1.0, 1.0, 1.0, 0.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vadapters.errors import BadInputError

EPS = np.spacing(1)

__all__ = [
    "SegmentationMetrics",
    "ber",
    "dice",
    "e_measure_curve",
    "iou",
    "mae",
    "mean_e_measure",
    "prepare",
    "s_measure",
    "weighted_f_measure",
]


def _array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise BadInputError(f"expected a 2-D map [H, W], got shape {x.shape}")
    return x


def binarize_gt(gt: Any) -> np.ndarray:
    """Ground truth to bool: bools as they are, uint8 above 128, floats above 0.5."""
    gt = _array(gt)
    if gt.dtype == bool:
        return gt
    if gt.dtype == np.uint8:
        return gt > 128
    return gt > 0.5


def prepare(pred: Any, gt: Any, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(float64 prediction in [0, 1], bool ground truth); uint8 predictions are divided by 255 first and, with
    `normalize`, the prediction is min-max normalised (MATLAB `mapminmax`; a constant map is left as it is)."""
    pred, gt = _array(pred), binarize_gt(gt)
    if pred.shape != gt.shape:
        raise BadInputError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    pred = pred.astype(np.float64) / (255.0 if pred.dtype == np.uint8 else 1.0)
    if normalize and pred.max() != pred.min():
        pred = (pred - pred.min()) / (pred.max() - pred.min())
    return pred, gt


# -------------------------------------------------------------------------------------------------- S-measure
def _object_score(values: np.ndarray) -> float:
    x = values.mean()
    sigma = values.std(ddof=1) if values.size > 1 else 0.0
    return 2.0 * x / (x * x + 1.0 + sigma + EPS)


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """The region SSIM of the reference code (MATLAB and PySODMetrics): `n - 1 + eps` denominators, so a one-pixel
    region scores 1 (no variance, no covariance). An empty region, whose weight is 0, scores 0 here; in the
    reference its NaN mean turns the whole S-measure into NaN (foreground centroid on the last row or column)."""
    n = pred.size
    if n == 0:
        return 0.0
    x, y = pred.mean(), gt.mean()
    sx = ((pred - x) ** 2).sum() / (n - 1 + EPS)
    sy = ((gt - y) ** 2).sum() / (n - 1 + EPS)
    sxy = ((pred - x) * (gt - y)).sum() / (n - 1 + EPS)
    alpha = 4.0 * x * y * sxy
    beta = (x * x + y * y) * (sx + sy)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def s_measure(pred: Any, gt: Any, alpha: float = 0.5, normalize: bool = True) -> float:
    """Structure measure `alpha * S_object + (1 - alpha) * S_region`, clipped at 0."""
    pred, gt = prepare(pred, gt, normalize)
    u = gt.mean()
    if u == 0:
        return float(1.0 - pred.mean())
    if u == 1:
        return float(pred.mean())
    s_obj = u * _object_score(pred[gt]) + (1 - u) * _object_score(1.0 - pred[~gt])
    h, w = gt.shape
    ys, xs = np.nonzero(gt)
    cy, cx = int(np.round(ys.mean())) + 1, int(np.round(xs.mean())) + 1  # MATLAB 1-based centroid
    g = gt.astype(np.float64)
    quads = [(slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, w)), (slice(cy, h), slice(0, cx))]
    quads.append((slice(cy, h), slice(cx, w)))
    weights = [cx * cy / (h * w), cy * (w - cx) / (h * w), (h - cy) * cx / (h * w)]
    weights.append(1.0 - sum(weights))
    s_reg = sum(wt * _ssim(pred[q], g[q]) for wt, q in zip(weights, quads))
    return float(max(0.0, alpha * s_obj + (1 - alpha) * s_reg))


# -------------------------------------------------------------------------------------------------- E-measure
def e_measure_curve(pred: Any, gt: Any, normalize: bool = True) -> np.ndarray:
    """E-measure at the 256 thresholds `t = 0..255` of `uint8(pred * 255) >= t` (index = threshold)."""
    pred, gt = prepare(pred, gt, normalize)
    q = (pred * 255).astype(np.uint8)
    n = gt.size
    n_fg = int(gt.sum())
    bins = np.arange(257)
    # pixels with value >= t, for the foreground and background of the ground truth
    fg_ge = np.cumsum(np.histogram(q[gt], bins=bins)[0][::-1])[::-1].astype(np.float64)
    bg_ge = np.cumsum(np.histogram(q[~gt], bins=bins)[0][::-1])[::-1].astype(np.float64)
    pred_fg = fg_ge + bg_ge
    pred_bg = n - pred_fg
    if n_fg == 0:
        total = pred_bg
    elif n_fg == n:
        total = pred_fg
    else:
        mean_fm = pred_fg / n
        mean_gt = n_fg / n
        # (FM, GT) pixel classes: counts and demeaned values
        parts = [
            (fg_ge, 1 - mean_fm, 1 - mean_gt),
            (bg_ge, 1 - mean_fm, -mean_gt),
            (n_fg - fg_ge, -mean_fm, 1 - mean_gt),
            (pred_bg - (n_fg - fg_ge), -mean_fm, -mean_gt),
        ]
        total = np.zeros(256)
        for count, fm, g in parts:
            xi = 2 * fm * g / (fm * fm + g * g + EPS)
            total += count * (xi + 1) ** 2 / 4
    return total / (n - 1 + EPS)


def mean_e_measure(pred: Any, gt: Any, normalize: bool = True) -> float:
    """Mean of `e_measure_curve` over the 256 thresholds (the reported `E_phi`)."""
    return float(e_measure_curve(pred, gt, normalize).mean())


# ----------------------------------------------------------------------------------------- weighted F-measure
def _gaussian_kernel(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    r = (size - 1) / 2
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    k = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    k[k < np.finfo(k.dtype).eps * k.max()] = 0
    return k / k.sum()


def weighted_f_measure(pred: Any, gt: Any, beta2: float = 1.0, normalize: bool = True) -> float:
    """Margolin's `F^w_beta` with `beta2 = beta^2` (1 in the MATLAB code and PySODMetrics); 0 for an empty GT."""
    from scipy.ndimage import convolve, distance_transform_edt

    pred, gt = prepare(pred, gt, normalize)
    if not gt.any():
        return 0.0
    dist, (iy, ix) = distance_transform_edt(~gt, return_indices=True)
    error = np.abs(pred - gt)
    spread = error[iy, ix]  # background pixels take the error of their nearest foreground pixel
    smoothed = convolve(spread, _gaussian_kernel(), mode="constant", cval=0.0)
    min_error = np.where(gt & (smoothed < error), smoothed, error)
    importance = np.where(gt, 1.0, 2.0 - np.exp(np.log(0.5) / 5.0 * dist))
    weighted = min_error * importance
    tp = gt.sum() - weighted[gt].sum()
    fp = weighted[~gt].sum()
    recall = 1.0 - weighted[gt].mean()
    precision = tp / (tp + fp + EPS)
    return float((1 + beta2) * recall * precision / (recall + beta2 * precision + EPS))


def mae(pred: Any, gt: Any, normalize: bool = True) -> float:
    """Mean absolute error between the (normalised) prediction and the binary ground truth."""
    pred, gt = prepare(pred, gt, normalize)
    return float(np.abs(pred - gt).mean())


# ------------------------------------------------------------------------------------------- thresholded ones
def _confusion(pred: Any, gt: Any, threshold: float) -> tuple[int, int, int, int]:
    pred, gt = prepare(pred, gt, normalize=False)
    p = pred > threshold
    return int((p & gt).sum()), int((~p & ~gt).sum()), int((p & ~gt).sum()), int((~p & gt).sum())


def ber(preds: Any, gts: Any, mode: str = "dataset", threshold: float = 125 / 255) -> float:
    """Balanced error rate in percent, `(pos_err + neg_err) / 2` with `pos_err = 100 (1 - TP / (TP + FN))`.

    Args:
        preds, gts: lists of maps (or one map each).
        mode (`str`): `"dataset"` accumulates TP/TN/FP/FN over all images (the usual definition);
            `"per_image"` averages per-image BERs (SAM-Adapter's code), skipping images without positives or
            without negatives, where a term is undefined.
        threshold (`float`): predictions above it are positive (the reference code: 125 / 255).
    """
    if mode not in ("dataset", "per_image"):
        raise BadInputError(f"mode must be 'dataset' or 'per_image', got {mode!r}")
    if not isinstance(preds, (list, tuple)):
        preds, gts = [preds], [gts]
    counts = [_confusion(p, g, threshold) for p, g in zip(preds, gts)]
    if mode == "dataset":
        tp, tn, fp, fn = (sum(c[i] for c in counts) for i in range(4))
        return float(_ber_terms(tp, tn, fp, fn))
    values = [_ber_terms(*c) for c in counts]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _ber_terms(tp: int, tn: int, fp: int, fn: int) -> float:
    if tp + fn == 0 or tn + fp == 0:
        return float("nan")
    return 50.0 * ((1 - tp / (tp + fn)) + (1 - tn / (tn + fp)))


def dice(pred: Any, gt: Any, threshold: float = 0.5) -> float:
    """`2 |P & G| / (|P| + |G|)` at `pred > threshold`; 1 when both are empty."""
    tp, _, fp, fn = _confusion(pred, gt, threshold)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def iou(pred: Any, gt: Any, threshold: float = 0.5) -> float:
    """`|P & G| / |P | G|` at `pred > threshold`; 1 when both are empty."""
    tp, _, fp, fn = _confusion(pred, gt, threshold)
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


class SegmentationMetrics:
    """Accumulate probability maps in [0, 1] and ground truths; `compute()` gives every metric.

    Returns (from `compute`): `S`, `E` (mean E-measure), `wF`, `MAE` (normalised predictions, averaged per
    image), `BER` (dataset mode, %), `BER_per_image` (%), `mDice`, `mIoU`, `n`.
    """

    def __init__(self, beta2: float = 1.0) -> None:
        self.beta2 = beta2
        self.rows: list[dict[str, float]] = []
        self._confusion = np.zeros(4, dtype=np.int64)
        self._ber_images: list[float] = []

    def update(self, prob: Any, gt: Any) -> dict[str, float]:
        """Add one image; returns its per-image values."""
        row = {
            "S": s_measure(prob, gt),
            "E": mean_e_measure(prob, gt),
            "wF": weighted_f_measure(prob, gt, self.beta2),
            "MAE": mae(prob, gt),
            "Dice": dice(prob, gt),
            "IoU": iou(prob, gt),
        }
        counts = _confusion(prob, gt, 125 / 255)
        self._confusion += np.asarray(counts)
        self._ber_images.append(_ber_terms(*counts))
        self.rows.append(row)
        return row

    def compute(self) -> dict[str, float]:
        if not self.rows:
            raise BadInputError("no images were added")
        out = {k: float(np.mean([r[k] for r in self.rows])) for k in ("S", "E", "wF", "MAE")}
        out["mDice"] = float(np.mean([r["Dice"] for r in self.rows]))
        out["mIoU"] = float(np.mean([r["IoU"] for r in self.rows]))
        out["BER"] = float(_ber_terms(*self._confusion.tolist()))
        finite = [v for v in self._ber_images if np.isfinite(v)]
        out["BER_per_image"] = float(np.mean(finite)) if finite else float("nan")
        out["n"] = len(self.rows)
        return out
