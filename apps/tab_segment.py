"""Segment tab: SAM vs SAM-Adapter masks side by side, prompt-free or with clicked points / a box, with the
camouflage / shadow metrics when a ground-truth mask exists.

Calls only public functions: `vadapters.pipelines.SAMAdapterPredictor` (+ `vadapters.pipelines.sam.load_adapter`),
`vadapters.models.load_sam`, `vadapters.disabled`, `vadapters.metrics.saliency.SegmentationMetrics`.
"""

from typing import Any

import numpy as np

from vadapters.errors import BadInputError

from .bases import list_update, sam_base
from .cache import adapter_stamp
from .context import StudioContext
from .security import check_image, image_input, ui_errors

SCENE_KINDS = ("salient", "camouflage", "shadow")
EXAMPLE_SIZE = 192
METRIC_KEYS = ("S", "E", "wF", "MAE", "mIoU", "mDice", "BER")


def example_names() -> list[str]:
    """Synthetic scenes (with ground truth) and the photos that ship with scikit-image (without)."""
    from vadapters.synthetic.segmentation import PHOTOS

    return [f"{kind} scene {i}" for kind in SCENE_KINDS for i in range(3)] + [f"photo: {p}" for p in PHOTOS]


def load_example(name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """`(image uint8 HxWx3, ground-truth mask uint8 HxW or None)` for an `example_names()` entry."""
    if name and name.startswith("photo: "):
        import skimage.data

        from vadapters.synthetic.segmentation import PHOTOS

        photo = name.removeprefix("photo: ")
        if photo not in PHOTOS:
            raise BadInputError(f"unknown example {name!r}")
        image = np.asarray(getattr(skimage.data, photo)())
        if image.shape[0] > 512 or image.shape[1] > 512:  # keep examples light: every 2nd/3rd pixel
            stride = int(np.ceil(max(image.shape[:2]) / 512))
            image = image[::stride, ::stride]
        return check_image(image), None
    parts = (name or "").split(" scene ")
    if len(parts) != 2 or parts[0] not in SCENE_KINDS or not parts[1].isdigit():
        raise BadInputError(f"unknown example {name!r}; pick one of the list")
    from vadapters.synthetic import segmentation

    cls = {"salient": segmentation.SalientScenes, "camouflage": segmentation.CamouflageScenes,
           "shadow": segmentation.ShadowScenes}[parts[0]]  # fmt: skip
    item = cls(16, seed=2024).render(int(parts[1]), EXAMPLE_SIZE, EXAMPLE_SIZE)
    image = ((item["image"].permute(1, 2, 0).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    return image, item["mask"].numpy().astype(np.uint8) * 255


def parse_points(text: str, width: int, height: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`"x,y,1; x,y,0"` (label 1 = foreground, 0 = background; default 1) -> `(coords [N, 2], labels [N])`.

    Example:
        >>> c, l = parse_points("10,20; 5,6,0", 64, 64)
        >>> c.tolist(), l.tolist()
        ([[10.0, 20.0], [5.0, 6.0]], [1, 0])
    """
    items = [p.strip() for p in (text or "").replace("\n", ";").split(";") if p.strip()]
    if not items:
        return None, None
    if len(items) > 32:
        raise BadInputError(f"at most 32 points, got {len(items)}")
    coords, labels = [], []
    for item in items:
        try:
            values = [float(v) for v in item.split(",")]
        except ValueError:
            values = []
        if len(values) not in (2, 3) or (len(values) == 3 and values[2] not in (0.0, 1.0)):
            raise BadInputError(f"points are 'x,y' or 'x,y,label' (label 1 or 0) separated by ';', got {item!r}")
        x, y = values[:2]
        if not (0 <= x < width and 0 <= y < height):
            raise BadInputError(f"point {x:g},{y:g} lies outside the {width}x{height} image")
        coords.append([x, y])
        labels.append(int(values[2]) if len(values) == 3 else 1)
    return np.asarray(coords, np.float32), np.asarray(labels, np.int64)


def parse_box(text: str, width: int, height: int) -> np.ndarray | None:
    """`"x0,y0,x1,y1"` in pixels -> XYXY array (corners in any order), or None when empty."""
    if not (text or "").strip():
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise BadInputError(f"box is 'x0,y0,x1,y1' in pixels, got {text!r}")
    x0, x1 = sorted(values[0::2])
    y0, y1 = sorted(values[1::2])
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height or x1 - x0 < 1 or y1 - y0 < 1:
        raise BadInputError(f"box {text!r} must lie inside the {width}x{height} image and be at least 1 px wide")
    return np.asarray([x0, y0, x1, y1], np.float32)


def overlay(image: np.ndarray, mask: np.ndarray, colour=(255, 64, 32)) -> np.ndarray:
    """Tint the mask's pixels of `image` (uint8 HxWx3) with `colour`."""
    out = image.astype(np.float32)
    out[mask] = 0.45 * out[mask] + 0.55 * np.asarray(colour, np.float32)
    return out.round().astype(np.uint8)


def sam_source(ctx: StudioContext, text: str | None) -> str | None:
    """What `load_sam` gets for the SAM field: None (the embedded tiny SAM), a model type `vit_b` / `vit_l` /
    `vit_h` (Meta's official file through torch.hub's cache, as `load_sam` resolves it), a confined path, or a Hub
    file id `ORG/NAME/FILE.pth`.

    Example:
        >>> import os
        >>> sam_source(StudioContext([os.getcwd()]), " vit_b "), sam_source(StudioContext([os.getcwd()]), "")
        ('vit_b', None)
    """
    from vadapters.models.defaults import SAM_CHECKPOINTS

    typed = (text or "").strip()
    return typed if typed in SAM_CHECKPOINTS else ctx.optional_path(typed, "SAM checkpoint")


def load_sam_model(ctx: StudioContext, sam: str | None, adapter: str | None) -> Any:
    """The (cached) SAM with the adapter, if any, loaded as "sam_adapter"."""

    def load():
        from vadapters.models import load_sam
        from vadapters.pipelines.sam import load_adapter

        model = load_sam(sam, device=ctx.device)
        if adapter is not None:
            load_adapter(model, adapter, "sam_adapter")
        return model.eval()

    return ctx.cache.get("sam", sam or "default", (adapter_stamp(adapter),) if adapter else (), load)


def segment(
    ctx: StudioContext, image: Any, sam: str, adapter: str, points: str, box: str, ground_truth: Any
) -> tuple[list[tuple[np.ndarray, str]], list[list[Any]]]:
    """`(gallery [(overlay, caption)], metrics rows [model, S, E, wF, MAE, mIoU, mDice, BER])`."""
    import vadapters
    from vadapters.metrics.saliency import SegmentationMetrics
    from vadapters.pipelines.sam import SAMAdapterPredictor

    image = check_image(image)
    h, w = image.shape[:2]
    coords, labels = parse_points(points, w, h)
    xyxy = parse_box(box, w, h)
    gt = None
    if ground_truth is not None:
        gt = check_image(ground_truth, "ground truth")[..., 0] > 127
        if gt.shape != (h, w):
            raise BadInputError(f"ground truth is {gt.shape[1]}x{gt.shape[0]} but the image is {w}x{h}")
    model = load_sam_model(ctx, sam_source(ctx, sam), ctx.optional_path(adapter, "adapter"))
    predictor = SAMAdapterPredictor(model)
    runs = [("SAM", False)] + ([("SAM-Adapter", True)] if vadapters.list_adapters(model) else [])
    mode = "prompt-free" if coords is None and xyxy is None else "prompted"
    gallery, rows = [], []
    for name, adapted in runs:
        if adapted:
            predictor.set_image(image)
            masks, scores, logits = predictor.predict(coords, labels, xyxy, multimask_output=False, return_logits=True)
        else:
            with vadapters.disabled(model):
                predictor.set_image(image)
                masks, scores, logits = predictor.predict(
                    coords, labels, xyxy, multimask_output=False, return_logits=True
                )
        prob = 1.0 / (1.0 + np.exp(-np.clip(masks[0], -30, 30)))
        binary = masks[0] > model.mask_threshold
        gallery.append((overlay(image, binary), f"{name} ({mode}), predicted IoU {float(scores[0]):.2f}"))
        if gt is not None:
            metrics = SegmentationMetrics()
            metrics.update(prob, gt)
            result = metrics.compute()
            rows.append([name, *[round(float(result[k]), 4) for k in METRIC_KEYS]])
    if gt is not None:
        gallery.append((overlay(image, gt, (32, 200, 64)), "ground truth"))
    return gallery, rows


def build(ctx: StudioContext, heavy: dict[str, Any]) -> None:
    """Add the Segment tab's components and events to the current `gr.Blocks`."""
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=3):
            image = image_input(label="Image (click to add prompts)", type="numpy", sources=["upload", "clipboard"])
            with gr.Row():
                example = gr.Dropdown(label="Example", choices=example_names(), value="camouflage scene 0")
                load_btn = gr.Button("Load example", size="sm")
            click_mode = gr.Radio(
                ["foreground point", "background point", "box corner"], value="foreground point", label="A click adds"
            )
            with gr.Row():
                points = gr.Textbox(label="Points x,y,label; ...", placeholder="empty + no box = prompt-free")
                box = gr.Textbox(label="Box x0,y0,x1,y1", placeholder="two 'box corner' clicks")
                clear = gr.Button("Clear prompts", size="sm")
        with gr.Column(scale=2):
            sam = gr.Textbox(
                label="SAM checkpoint",
                value="",
                placeholder="empty = embedded tiny SAM; vit_b / vit_l / vit_h (official, via torch.hub's cache); "
                "a sam_vit_*.pth; or ORG/NAME/FILE.pth",
            )
            adapter = gr.Dropdown(
                label="SAM-Adapter (folder under the allowed roots)", choices=[], allow_custom_value=True
            )
            refresh = gr.Button("Refresh adapters", size="sm")
            ground_truth = image_input(label="Ground truth mask (optional)", type="numpy", image_mode="L", height=160)
            run = gr.Button("Segment", variant="primary")
    gallery = gr.Gallery(label="SAM | SAM-Adapter | ground truth", columns=3, height=320, object_fit="contain")
    metrics = gr.Dataframe(headers=["model", *METRIC_KEYS], label="Metrics (when a ground truth is given)")

    @ui_errors
    def on_example(name):
        img, gt = load_example(name)
        return img, gt, "", ""

    def on_click(mode: str, points_text: str, box_text: str, evt: gr.SelectData):
        x, y = (int(v) for v in evt.index[:2])
        if mode == "box corner":
            corners = [v for v in (box_text or "").split(",") if v.strip()]
            corners = corners[:2] if len(corners) in (2, 3) else []
            return points_text, ",".join([*corners, str(x), str(y)])
        label = 1 if mode == "foreground point" else 0
        items = [p for p in (points_text or "").split(";") if p.strip()]
        return "; ".join([*items, f"{x},{y},{label}"]), box_text

    def list_found(sam_text: str = ""):
        return list_update(ctx, ["sam_adapter"], sam_base, sam_text)

    @ui_errors
    def on_segment(image, sam, adapter, points, box, ground_truth):
        return segment(ctx, image, sam, adapter, points, box, ground_truth)

    load_btn.click(on_example, example, [image, ground_truth, points, box], api_name="segment_example")
    image.select(on_click, [click_mode, points, box], [points, box], api_name="segment_click", queue=False)
    clear.click(lambda: ("", ""), None, [points, box], api_name="segment_clear", queue=False)
    refresh.click(list_found, sam, adapter, api_name="segment_list_adapters", queue=False)
    gr.on([sam.submit, sam.blur], list_found, sam, adapter, queue=False, api_name=False)
    gr.on(None, list_found, sam, adapter, queue=False, api_visibility="private")  # filled when the page loads
    run.click(
        on_segment, [image, sam, adapter, points, box, ground_truth], [gallery, metrics], api_name="segment", **heavy
    )
