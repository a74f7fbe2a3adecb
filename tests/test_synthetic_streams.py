"""Synthetic classification sets (ShapeClasses, ColourDigits), corruptions and test-time adaptation streams."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vadapters.errors import BadInputError
from vadapters.synthetic import classification, streams
from vadapters.synthetic.classification import ColourDigits, ShapeClasses
from vadapters.synthetic.streams import (
    CORRUPTIONS,
    class_sorted_stream,
    continual_stream,
    corrupt,
    iid_stream,
    label_shift_counts,
    label_shift_stream,
)

# Everything except glass_blur, whose first call JIT-compiles for seconds (tested under the slow marker).
FAST_CORRUPTIONS = [name for name in CORRUPTIONS if name != "glass_blur"]


@pytest.fixture(scope="module")
def shapes() -> ShapeClasses:
    return ShapeClasses(40, seed=0)


@pytest.fixture
def fake_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for scikit-learn's 1,797 8x8 digits (grey levels 0-16), so the tests need no scikit-learn."""
    grey = np.zeros((1797, 8, 8))
    grey[:, 1:7, 2:6] = np.random.default_rng(0).integers(0, 17, (1797, 6, 4))  # a blank border, like real digits
    grey[:, 3:5, 3:5] = 16  # and a full-intensity stroke
    fake = (grey, np.arange(1797) % 10)
    monkeypatch.setattr(classification, "_load_digits", lambda: fake)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


# ----------------------------------------------------------------------------------------------- datasets


def test_shapes_items_shapes_and_determinism(shapes: ShapeClasses) -> None:
    image, label = shapes[13]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 3
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    images = shapes.images_uint8()
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    assert torch.equal(image, torch.from_numpy(images[13].copy()).permute(2, 0, 1).float() / 255)
    np.testing.assert_array_equal(ShapeClasses(40, seed=0).images_uint8(), images)
    np.testing.assert_array_equal(ShapeClasses(15, seed=0).images_uint8(), images[:15])  # item i only on (seed, i)
    assert mean_abs_diff(ShapeClasses(40, seed=1).images_uint8(), images) > 10
    assert ShapeClasses(4, size=48).images_uint8().shape == (4, 48, 48, 3)


def test_shapes_classes_balanced_and_colour_not_predictive() -> None:
    data = ShapeClasses(500, seed=3)
    assert data.num_classes == 10 and len(set(data.class_names)) == 10
    assert data.class_names[0] == "solid circle" and data.class_names[9] == "striped ring"
    np.testing.assert_array_equal(np.bincount(data.labels), [50] * 10)

    colour = data.images_uint8().reshape(len(data), -1, 3).mean(1) / 255.0  # mean RGB of each image
    labels = data.labels
    class_means = np.stack([colour[labels == c].mean(0) for c in range(10)])
    assert np.abs(class_means[:, None] - class_means[None]).max() < 0.15  # noise level at 50 per class: ~0.1
    # A nearest-class-mean classifier on mean colour, fit on half, is near chance (0.1) on the other half.
    fit = (np.arange(len(data)) // 10) % 2 == 0
    centres = np.stack([colour[fit & (labels == c)].mean(0) for c in range(10)])
    predicted = np.argmin(((colour[~fit, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert (predicted == labels[~fit]).mean() < 0.2


def test_shapes_bad_options() -> None:
    with pytest.raises(BadInputError, match="num_items"):
        ShapeClasses(0)
    with pytest.raises(BadInputError, match="size"):
        ShapeClasses(4, size=4)


def test_colour_digits_split_and_colours(fake_digits: None) -> None:
    train, test, full = ColourDigits("train"), ColourDigits("test"), ColourDigits("all")
    assert (len(train), len(test), len(full)) == (1200, 597, 1797)
    assert set(train.indices).isdisjoint(test.indices)
    assert sorted([*train.indices, *test.indices]) == list(range(1797))
    np.testing.assert_array_equal(ColourDigits("test").images_uint8(), test.images_uint8())
    np.testing.assert_array_equal(test.images_uint8(), full.images_uint8()[test.indices])  # same colours per digit
    np.testing.assert_array_equal(test.labels, full.labels[test.indices])
    assert mean_abs_diff(ColourDigits("test", seed=1).images_uint8(), test.images_uint8()) > 5
    assert ColourDigits("test", split_seed=1).indices.tolist() != test.indices.tolist()

    images = test.images_uint8()
    assert images.shape == (597, 32, 32, 3) and images.dtype == np.uint8
    darkest, brightest = images.reshape(597, -1, 3).min(1), images.reshape(597, -1, 3).max(1)
    assert darkest.max() <= 128  # every image has background pixels, tinted from U(0, 0.5)^3
    assert brightest.min() >= 127  # and full-intensity strokes, coloured from U(0.5, 1)^3
    image, label = test[0]
    assert image.shape == (3, 32, 32) and label == int(test.labels[0])
    assert test.class_names == tuple("0123456789")


def test_colour_digits_bad_split(fake_digits: None) -> None:
    with pytest.raises(BadInputError, match="'train', 'test', 'all'"):
        ColourDigits("val")


def test_colour_digits_real_sklearn() -> None:
    pytest.importorskip("sklearn")
    train, test = ColourDigits("train"), ColourDigits("test")
    assert (len(train), len(test)) == (1200, 597)
    assert set(np.unique(test.labels)) == set(range(10))


# ----------------------------------------------------------------------------------------------- corruptions


def test_corruption_names_match_imagecorruptions() -> None:
    from imagecorruptions import get_corruption_names

    assert len(CORRUPTIONS) == 15 and CORRUPTIONS[0] == "gaussian_noise" and CORRUPTIONS[-1] == "jpeg_compression"
    assert list(CORRUPTIONS) == get_corruption_names("common")


@pytest.mark.parametrize("name", FAST_CORRUPTIONS)
def test_corrupt_deterministic_and_changes_images(shapes: ShapeClasses, name: str) -> None:
    clean = shapes.images_uint8()[:3]
    state = np.random.get_state()
    first = corrupt(clean, name, severity=5, seed=7)
    assert first.shape == clean.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(corrupt(clean, name, severity=5, seed=7), first)
    np.testing.assert_array_equal(corrupt(clean[:1], name, 5, seed=7)[0], first[0])  # not on N
    assert mean_abs_diff(first, clean) > 0.5
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]


def test_corrupt_seed_and_severity(shapes: ShapeClasses) -> None:
    clean = shapes.images_uint8()[:16]
    mild, strong = corrupt(clean, "gaussian_noise", 1, seed=0), corrupt(clean, "gaussian_noise", 5, seed=0)
    assert mean_abs_diff(strong, clean) > 2 * mean_abs_diff(mild, clean)
    assert not np.array_equal(corrupt(clean, "gaussian_noise", 1, seed=1), mild)
    assert not np.array_equal(corrupt(clean, "impulse_noise", 3, seed=1), corrupt(clean, "impulse_noise", 3, seed=0))


def test_corrupt_errors(shapes: ShapeClasses) -> None:
    clean = shapes.images_uint8()[:2]
    with pytest.raises(BadInputError, match="unknown corruption 'rain'.*gaussian_noise.*jpeg_compression"):
        corrupt(clean, "rain", 3)
    for severity in (0, 6, 2.5, True):
        with pytest.raises(BadInputError, match="severity"):
            corrupt(clean, "fog", severity)
    with pytest.raises(BadInputError, match="at least 32x32|>= 32x32"):
        corrupt(ShapeClasses(2, size=24).images_uint8(), "fog", 1)
    with pytest.raises(BadInputError, match="uint8"):
        corrupt(clean.astype(np.float32), "fog", 1)


def test_corrupt_cache(shapes: ShapeClasses, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = shapes.images_uint8()[:4]
    fresh = corrupt(clean, "shot_noise", 2, seed=3, cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz" and "shot_noise" in files[0].name

    def fail(*args: object) -> None:
        raise AssertionError("the cached result should have been used")

    monkeypatch.setattr(streams, "_apply", fail)
    np.testing.assert_array_equal(corrupt(clean, "shot_noise", 2, seed=3, cache_dir=tmp_path / "cache"), fresh)
    monkeypatch.undo()
    np.testing.assert_array_equal(corrupt(clean, "shot_noise", 2, seed=3), fresh)
    files[0].write_bytes(b"not an npz")  # a damaged cache file is recomputed
    np.testing.assert_array_equal(corrupt(clean, "shot_noise", 2, seed=3, cache_dir=tmp_path / "cache"), fresh)


@pytest.mark.slow
def test_glass_blur_deterministic(shapes: ShapeClasses) -> None:
    clean = shapes.images_uint8()[:2]
    first = corrupt(clean, "glass_blur", 5, seed=0)
    np.testing.assert_array_equal(corrupt(clean, "glass_blur", 5, seed=0), first)
    assert mean_abs_diff(first, clean) > 0.5


# ----------------------------------------------------------------------------------------------- streams


def check_batches(stream: list[dict], batch_size: int) -> None:
    for batch in stream:
        x, y = batch["x"], batch["y"]
        assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[1] == 3 and 1 <= len(x) <= batch_size
        assert y.dtype == torch.long and y.shape == (len(x),) and batch["index"].shape == (len(x),)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and isinstance(batch["domain"], str)


def test_iid_stream(shapes: ShapeClasses) -> None:
    stream = iid_stream(shapes, batch_size=16, seed=0)
    check_batches(stream, 16)
    assert [len(b["y"]) for b in stream] == [16, 16, 8] and {b["domain"] for b in stream} == {"clean"}
    index = torch.cat([b["index"] for b in stream]).numpy()
    assert sorted(index) == list(range(40)) and not np.array_equal(index, np.arange(40))
    np.testing.assert_array_equal(torch.cat([b["y"] for b in stream]).numpy(), shapes.labels[index])
    x0 = stream[0]["x"][0]
    assert torch.equal(x0, shapes[int(stream[0]["index"][0])][0])
    again = iid_stream(shapes, batch_size=16, seed=0)
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(stream, again))
    assert json.loads(json.dumps(stream.spec.to_dict()))["kind"] == "iid"

    noisy = iid_stream((shapes.images_uint8(), shapes.labels), 16, corruption="gaussian_noise", severity=1)
    assert noisy[0]["domain"] == "gaussian_noise" and noisy.spec.dataset == "arrays(n=40)"


def test_class_sorted_stream(shapes: ShapeClasses) -> None:
    stream = class_sorted_stream(shapes, batch_size=8, seed=1, corruption="contrast", severity=2)
    labels = torch.cat([b["y"] for b in stream]).numpy()
    assert np.all(np.diff(labels) >= 0) and len(labels) == 40
    assert stream.spec.ordering == "class_sorted" and stream.spec.domains == ("contrast",)


def test_label_shift_counts_rule() -> None:
    for seed in range(50):
        counts, proportions = label_shift_counts([60] * 10, a=2.0, seed=seed)
        assert counts.sum() > 0 and counts.max() == 60 and np.isclose(proportions.sum(), 1.0)
        assert counts.max() < 0.9 * counts.sum()  # the top 10% (1 of 10 classes) hold < 90%
    counts, _ = label_shift_counts([50] * 100, seed=0)
    assert np.sort(counts)[::-1][:10].sum() < 0.9 * counts.sum()
    with pytest.raises(BadInputError, match="2 classes"):
        label_shift_counts([10])


def test_label_shift_stream() -> None:
    data = ShapeClasses(200, seed=0)
    stream = label_shift_stream(data, batch_size=32, seed=2)
    labels = torch.cat([b["y"] for b in stream]).numpy()
    counts = np.bincount(labels, minlength=10)
    assert tuple(counts) == stream.spec.class_counts and counts.max() == 20
    assert counts.max() < 0.9 * counts.sum()
    assert counts.max() >= 3 * max(counts.min(), 1)  # imbalanced
    index = torch.cat([b["index"] for b in stream]).numpy()
    assert len(set(index)) == len(index)
    assert np.isclose(sum(stream.spec.label_proportions), 1.0)
    sorted_labels = torch.cat([b["y"] for b in label_shift_stream(data, 32, seed=2, ordering="class_sorted")])
    assert np.all(np.diff(sorted_labels.numpy()) >= 0) and sorted(sorted_labels.tolist()) == sorted(labels.tolist())


def test_continual_stream_standard_order(shapes: ShapeClasses, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "_apply", lambda images, name, severity, seed: 255 - images)  # skip the real work
    stream = continual_stream(shapes, "standard", severity=5, batch_size=16)
    domains = [b["domain"] for b in stream]
    assert domains == [name for name in CORRUPTIONS for _ in range(3)]
    assert stream.spec.domains == CORRUPTIONS and stream.spec.num_samples == 15 * 40
    assert stream.spec.num_batches == len(stream) == 45
    shuffled = continual_stream(shapes, "standard", batch_size=40, order="random", seed=1)
    assert sorted(shuffled.spec.domains) == sorted(CORRUPTIONS) and shuffled.spec.domains != CORRUPTIONS
    again = continual_stream(shapes, "standard", batch_size=40, order="random", seed=1)
    assert again.spec.domains == shuffled.spec.domains
    revisit = continual_stream(shapes, ["fog", "clean"], batch_size=40, repeats=2, ordering="class_sorted")
    assert [b["domain"] for b in revisit] == ["fog", "clean", "fog", "clean"]
    assert all(np.all(np.diff(b["y"].numpy()) >= 0) for b in revisit)


def test_continual_stream_real_corruptions() -> None:
    data = ShapeClasses(16, seed=0)
    stream = continual_stream(data, ["gaussian_noise", "pixelate", "fog"], severity=3, batch_size=8, seed=0)
    check_batches(stream, 8)
    assert [b["domain"] for b in stream] == ["gaussian_noise"] * 2 + ["pixelate"] * 2 + ["fog"] * 2
    first = stream[0]
    expected = corrupt(data.images_uint8(), "gaussian_noise", 3, seed=0)[first["index"].numpy()]
    assert torch.equal(first["x"], torch.from_numpy(expected).permute(0, 3, 1, 2).float() / 255)


def test_stream_errors(shapes: ShapeClasses) -> None:
    with pytest.raises(BadInputError, match="unknown corruption 'rain'; valid names: gaussian_noise"):
        continual_stream(shapes, ["fog", "rain"])
    with pytest.raises(BadInputError, match="order"):
        continual_stream(shapes, ["fog"], order="reverse")
    with pytest.raises(BadInputError, match="iid, class_sorted"):
        continual_stream(shapes, ["fog"], ordering="sorted")
    with pytest.raises(BadInputError, match="batch_size"):
        iid_stream(shapes, batch_size=0)
    with pytest.raises(BadInputError, match="severity"):
        continual_stream(shapes, ["fog"], severity=6)
    with pytest.raises(BadInputError, match="images_uint8"):
        iid_stream([1, 2, 3])
