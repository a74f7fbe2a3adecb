"""`SAMAdapterPredictor`: segment-anything's `SamPredictor` with a SAM-Adapter, prompt-free or promptable, any batch.

Example:
    >>> import numpy as np
    >>> from vadapters.pipelines.sam import SAMAdapterPredictor
    >>> predictor = SAMAdapterPredictor()  # embedded tiny SAM, no adapter
    >>> predictor.set_image(np.zeros((40, 56, 3), np.uint8))
    >>> masks, scores, low_res = predictor.predict()  # prompt-free (SAM-Adapter style)
    >>> masks.shape, scores.shape
    ((1, 40, 56), (1,))
    >>> results = predictor.predict_batch([np.zeros((30, 30, 3), np.uint8)] * 3)
    >>> len(results), results[0][0].shape
    (3, (1, 30, 30))
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from segment_anything import SamPredictor

from vadapters.core.images import load_image
from vadapters.core.validation import check_box, check_points
from vadapters.errors import AdapterStateError


def load_adapter(sam: torch.nn.Module, path: str | os.PathLike, adapter_name: str | None = None) -> str:
    """Load a SAM-Adapter into `sam`: a vadapters folder / single file, or an official `.pth` / `.safetensors`
    checkpoint (converted on the fly). Returns the adapter name."""
    import vadapters
    from vadapters.core.io import CONFIG_NAME, read_metadata

    path = os.fspath(path)
    name = adapter_name or "sam_adapter"
    official = os.path.isfile(path) and (
        not path.endswith(".safetensors") or "vadapters_config" not in read_metadata(path)
    )
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_NAME)):
        official = False
    if official:
        from vadapters.core.api import _inject_into, load_adapter_state_dict
        from vadapters.methods.sam_adapter.conversion import convert

        config, tensors = convert(path)
        _inject_into(sam, config, name, trainable=False)
        load_adapter_state_dict(sam, name, tensors)
    else:
        vadapters.load(sam, path, adapter_name=name)
    return name


class SAMAdapterPredictor(SamPredictor):
    """`SamPredictor` (same `set_image` / `predict` / `predict_torch`) on a SAM that may carry SAM-Adapters.

    Differences: `predict()` without points, boxes or mask input decodes prompt-free (SAM-Adapter's mode: no sparse
    prompts, `no_mask_embed`) and then defaults to one mask; `predict_batch` segments any number of images in one
    encoder batch.

    Args:
        sam_model: a `Sam`, an official `sam_vit_*.pth`, or None for the embedded tiny SAM.
        adapter: optional adapter folder / file / official checkpoint to load.
        device: where to run.
    """

    def __init__(self, sam_model: Any = None, adapter: str | os.PathLike | None = None, device: Any = None) -> None:
        from vadapters.models import load_sam

        sam = load_sam(sam_model, device=device)
        if adapter is not None:
            load_adapter(sam, adapter)
        super().__init__(sam.eval())

    def set_image(self, image: Any, image_format: str = "RGB") -> None:
        """As `SamPredictor.set_image`, for any image `vadapters.core.images.load_image` reads: a file path, a PIL
        image, uint8 / bool / float-in-[0, 1] arrays or tensors, at least 8x8 pixels."""
        super().set_image(load_image(image), image_format)

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool | None = None,
        return_logits: bool = False,
    ):
        """As `SamPredictor.predict`; with no prompt at all it is prompt-free and `multimask_output` defaults to
        False (SAM-Adapter), otherwise to True (SAM)."""
        if not self.is_image_set:
            raise AdapterStateError("no image is set; call set_image(image) before predict()")
        height, width = self.original_size
        if point_coords is not None:
            point_coords, point_labels = check_points(point_coords, point_labels, height, width)
        if box is not None:
            box = check_box(box, height, width)
        prompt_free = point_coords is None and box is None and mask_input is None
        if multimask_output is None:
            multimask_output = not prompt_free
        return super().predict(point_coords, point_labels, box, mask_input, multimask_output, return_logits)

    @torch.no_grad()
    def predict_batch(
        self,
        images: list[Any],
        point_coords: list[np.ndarray | None] | None = None,
        point_labels: list[np.ndarray | None] | None = None,
        boxes: list[np.ndarray | None] | None = None,
        multimask_output: bool = False,
        return_logits: bool = False,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Segment a list of images (any sizes) with one batched encoder pass; `[(masks, scores, low_res)]`.

        Without prompts the whole batch is decoded in one call; per-image points (`[N, 2]` in pixels, labels
        `[N]`) or boxes (`[4]`, XYXY) are decoded per image through the prompt encoder.
        """
        from vadapters.core.hosts.sam import decode_masks, upscale_logits

        if not images:
            return []
        pixels, batch = [], {"input_sizes": [], "original_sizes": []}
        for image in images:  # exactly `set_image`'s resize, normalisation and padding
            image = load_image(image)
            resized = torch.as_tensor(self.transform.apply_image(image), device=self.device).permute(2, 0, 1)
            pixels.append(self.model.preprocess(resized[None].float())[0])
            batch["input_sizes"].append(tuple(resized.shape[-2:]))
            batch["original_sizes"].append(image.shape[:2])
        embeddings = self.model.image_encoder(torch.stack(pixels))
        n = len(images)
        has_points = point_coords is not None and any(p is not None for p in point_coords)
        has_boxes = boxes is not None and any(b is not None for b in boxes)
        if not has_points and not has_boxes:
            low, iou = decode_masks(self.model, embeddings, multimask_output=multimask_output, return_iou=True)
            lows, ious = list(low), list(iou)
        else:
            lows, ious = [], []
            for i in range(n):
                pts = box = None
                size = batch["original_sizes"][i]
                if has_points and point_coords[i] is not None:
                    labels = np.ones(len(point_coords[i])) if point_labels is None else point_labels[i]
                    coords, labels = check_points(point_coords[i], labels, *size)
                    coords = self.transform.apply_coords(coords, size)
                    pts = (
                        torch.as_tensor(coords, device=self.device)[None],
                        torch.as_tensor(labels, device=self.device)[None],
                    )
                if has_boxes and boxes[i] is not None:
                    xyxy = check_box(boxes[i], *size)
                    box = torch.as_tensor(self.transform.apply_boxes(xyxy, size), device=self.device)
                    box = box.float().reshape(1, 4)
                low, iou = decode_masks(
                    self.model, embeddings[i : i + 1], pts, box, multimask_output=multimask_output, return_iou=True
                )
                lows.append(low[0])
                ious.append(iou[0])
        out = []
        for i in range(n):
            masks = upscale_logits(self.model, lows[i][None], batch["input_sizes"][i], batch["original_sizes"][i])[0]
            if not return_logits:
                masks = masks > self.model.mask_threshold
            out.append((masks.cpu().numpy(), ious[i].cpu().numpy(), lows[i].cpu().numpy()))
        return out
