"""Synthetic motion clips for image-to-video experiments: a textured sprite sliding over a textured background.

A clip is a pure function of its first frame's parameters (`FirstFrame`) and its motion (`Motion`, which the caption
states, e.g. "a red square moving up-left quickly"): the sprite, with its texture attached, translates by `(dx, dy)`
per frame over a static background. Everything is in relative coordinates: `dx` is a fraction of the width and `dy` a
fraction of the height per frame, the sprite's size a fraction of the short side. So any `H x W` shows the same motion
and the mask centroid moves by `dx * W, dy * H` pixels per frame.

Speeds (`SPEEDS`): "slowly" is 1/64 and "quickly" 1/32 of the frame per frame, i.e. 1 and 2 px per frame at 64x64;
diagonal directions move `speed / sqrt(2)` along each axis. The sprite never wraps: `MotionClips` draws start positions
so that it stays fully inside the frame for its `num_frames`, and `render_clip` refuses paths whose sprite centre would
leave the frame (so the sprite is always at least partly visible).

Example:
    >>> from vadapters.synthetic.motion import MotionClips
    >>> clips = MotionClips(4, seed=0)
    >>> item = clips.render(0, 16, 16)
    >>> tuple(item["frames"].shape), tuple(item["masks"].shape), " moving " in item["caption"]
    ((8, 3, 16, 16), (8, 16, 16), True)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vadapters.errors import BadInputError

__all__ = ["DIRECTIONS", "PATTERNS", "SHAPES", "SPEEDS", "FirstFrame", "Motion", "MotionClips", "render_clip"]

_D = 1 / math.sqrt(2)
# Unit direction (x right, y down) per direction word.
DIRECTIONS: dict[str, tuple[float, float]] = {
    "right": (1.0, 0.0),
    "left": (-1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-right": (_D, -_D),
    "up-left": (-_D, -_D),
    "down-right": (_D, _D),
    "down-left": (-_D, _D),
}
SPEEDS: dict[str, float] = {"slowly": 1 / 64, "quickly": 1 / 32}  # fraction of the frame per frame
SHAPES = ("square", "circle", "triangle", "diamond")
PATTERNS = ("stripes", "checker", "rings")
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.10),
    "green": (0.12, 0.72, 0.20),
    "blue": (0.15, 0.25, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "purple": (0.55, 0.15, 0.75),
    "cyan": (0.10, 0.80, 0.85),
    "white": (0.95, 0.95, 0.95),
}
SIZE_RANGE = (0.2, 0.3)  # sprite side / diameter as a fraction of the short side
MARGIN = 0.02  # `MotionClips` keeps the sprite this far (fraction of the frame) from the edges
SHADE = 0.5  # the sprite's texture mixes its colour with this fraction of it
MIN_FRAMES, MAX_FRAMES = 8, 16


def _choice(name: str, value: str, allowed) -> str:
    if value not in allowed:
        raise BadInputError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class FirstFrame:
    """Everything needed to draw frame 0, in relative coordinates.

    Args:
        shape (`str`): one of `SHAPES`.
        color (`str`): sprite colour, a `PALETTE` name; its texture mixes it with a darker shade of itself.
        size (`float`): sprite side (or diameter) as a fraction of the short side.
        center (`tuple[float, float]`): sprite centre `(y, x)` as fractions of height and width.
        pattern (`str`), pattern_freq (`float`), pattern_angle (`float`): sprite texture (one of `PATTERNS`),
            cycles across the sprite, direction in radians.
        background (`tuple[str, str]`): the background texture's two `PALETTE` colours.
        background_pattern (`str`), background_freq (`float`), background_angle (`float`): background texture,
            cycles across the short side, direction in radians.
    """

    shape: str
    color: str
    size: float
    center: tuple[float, float]
    pattern: str = "stripes"
    pattern_freq: float = 2.0
    pattern_angle: float = 0.0
    background: tuple[str, str] = ("blue", "green")
    background_pattern: str = "checker"
    background_freq: float = 3.0
    background_angle: float = 0.0

    def __post_init__(self) -> None:
        _choice("shape", self.shape, SHAPES)
        for name, value in (("pattern", self.pattern), ("background_pattern", self.background_pattern)):
            _choice(name, value, PATTERNS)
        for value in (self.color, *self.background):
            _choice("colour", value, PALETTE)
        if not 0 < self.size <= 1:
            raise BadInputError(f"size must be in (0, 1], got {self.size!r}")


@dataclass(frozen=True)
class Motion:
    """A straight motion: `direction` (a `DIRECTIONS` word), `speed` (a `SPEEDS` word) and `step`, the distance per
    frame as a fraction of the frame (defaults to `SPEEDS[speed]`).

    Example:
        >>> m = Motion.from_caption("a red square moving up-left quickly")
        >>> m.direction, m.speed, round(m.dx * 64, 3), round(m.dy * 64, 3)
        ('up-left', 'quickly', -1.414, -1.414)
    """

    direction: str
    speed: str
    step: float | None = None

    def __post_init__(self) -> None:
        _choice("direction", self.direction, DIRECTIONS)
        if not isinstance(self.speed, str) or not self.speed:
            raise BadInputError(f"speed must be a word such as {', '.join(SPEEDS)}, got {self.speed!r}")
        if self.step is None:
            object.__setattr__(self, "step", SPEEDS[_choice("speed", self.speed, SPEEDS)])
        elif not self.step >= 0:
            raise BadInputError(f"step must be >= 0, got {self.step!r}")

    @property
    def dx(self) -> float:
        """Motion per frame along x, as a fraction of the width (positive: right)."""
        return DIRECTIONS[self.direction][0] * self.step

    @property
    def dy(self) -> float:
        """Motion per frame along y, as a fraction of the height (positive: down)."""
        return DIRECTIONS[self.direction][1] * self.step

    def as_dict(self) -> dict:
        return {"direction": self.direction, "speed": self.speed, "dx": self.dx, "dy": self.dy}

    @classmethod
    def from_caption(cls, caption: str, speeds: Mapping[str, float] | None = None) -> Motion:
        """Read "moving <direction> <speed>" from a caption; `speeds` maps speed words to steps (default `SPEEDS`)."""
        speeds = SPEEDS if speeds is None else speeds
        words = "|".join(re.escape(w) for w in sorted(DIRECTIONS, key=len, reverse=True))
        found = re.search(rf"moving ({words}) (\S+)", caption)
        if found is None or found.group(2) not in speeds:
            raise BadInputError(
                f"caption {caption!r} must contain 'moving <direction> <speed>' with a direction in "
                f"{', '.join(DIRECTIONS)} and a speed in {', '.join(speeds)}"
            )
        return cls(found.group(1), found.group(2), float(speeds[found.group(2)]))


def caption_for(first: FirstFrame, motion: Motion) -> str:
    """The clip's caption, e.g. "a red square moving right slowly"."""
    article = "an" if first.color[0] in "aeiou" else "a"
    return f"{article} {first.color} {first.shape} moving {motion.direction} {motion.speed}"


def _pattern(kind: str, x: np.ndarray, y: np.ndarray, freq: float, angle: float) -> np.ndarray:
    """A smooth texture in [0, 1] over coordinates `x, y` (in the units `freq` counts cycles over)."""
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin(2 * math.pi * freq * u)
    if kind == "checker":
        return 0.5 + 0.5 * np.tanh(4 * np.sin(2 * math.pi * freq * u) * np.sin(2 * math.pi * freq * v))
    return 0.5 + 0.5 * np.cos(2 * math.pi * freq * np.hypot(u, v))


def _sdf(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance to a shape inscribed in the square `[-0.5, 0.5]^2` (negative inside), `y` pointing down."""
    if shape == "circle":
        return np.hypot(x, y) - 0.5
    if shape == "square":
        qx, qy = np.abs(x) - 0.5, np.abs(y) - 0.5
        return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    if shape == "diamond":
        return (np.abs(x) + np.abs(y) - 0.5) / math.sqrt(2)
    # equilateral triangle pointing up, centred on its centroid, half-side r = sqrt(3) / 4 so it fits the box
    r, k = math.sqrt(3) / 4, math.sqrt(3)
    px, py = np.abs(x) - r, -y + r / k
    flip = px + k * py > 0
    px, py = np.where(flip, (px - k * py) / 2, px), np.where(flip, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * r, 0)
    return -np.hypot(px, py) * np.sign(py)


def _as_motion(caption_or_motion, speeds: Mapping[str, float] | None) -> Motion:
    if isinstance(caption_or_motion, Motion):
        return caption_or_motion
    if isinstance(caption_or_motion, str):
        return Motion.from_caption(caption_or_motion, speeds)
    if isinstance(caption_or_motion, Mapping):  # dx, dy (as `render_clip` returns them) take precedence over speeds
        speed, dx, dy = caption_or_motion.get("speed"), caption_or_motion.get("dx"), caption_or_motion.get("dy")
        step = None if speeds is None or speed not in speeds else float(speeds[speed])
        step = math.hypot(dx, dy) if dx is not None and dy is not None else step
        return Motion(caption_or_motion.get("direction"), speed, step)
    raise BadInputError(f"expected a caption, a Motion or a dict(direction, speed), got {type(caption_or_motion)}")


def render_clip(
    first_frame: FirstFrame | Mapping,
    caption_or_motion: str | Motion | Mapping,
    num_frames: int,
    height: int,
    width: int,
    speeds: Mapping[str, float] | None = None,
) -> dict:
    """Draw a clip: the sprite of `first_frame` translated by the motion once per frame over the static background.

    Args:
        first_frame (`FirstFrame` or `dict`): frame 0's parameters (a dict is passed to `FirstFrame`).
        caption_or_motion (`str`, `Motion` or `dict`): a caption containing "moving <direction> <speed>", a
            `Motion`, or `dict(direction=..., speed=...)` (optionally with `dx`, `dy`, e.g. a returned `motion`).
            Only the motion is read from a caption: the returned caption is rebuilt from `first_frame`.
        num_frames (`int`): number of frames (>= 1).
        height, width (`int`): frame size in pixels.
        speeds (`Mapping[str, float]`, optional): speed word -> step, for captions and dicts; default `SPEEDS`.

    Returns:
        `dict` with `frames` (float32 `[F, 3, H, W]` in [-1, 1]), `masks` (bool `[F, H, W]`, pixel centres inside the
        sprite), `caption`, `motion` (`dict(direction, speed, dx, dy)` in fractions of the frame per frame, plus
        `dx_px`, `dy_px`) and `first_frame`.

    Example:
        >>> first = FirstFrame("circle", "red", 0.25, (0.5, 0.25))
        >>> clip = render_clip(first, "a red circle moving right quickly", 4, 32, 32)
        >>> [round(float(m.nonzero()[:, 1].float().mean()), 2) for m in clip["masks"]]
        [7.5, 8.5, 9.5, 10.5]
    """
    motion = _as_motion(caption_or_motion, speeds)
    first_frame = FirstFrame(**first_frame) if isinstance(first_frame, Mapping) else first_frame
    if not isinstance(first_frame, FirstFrame):
        raise BadInputError(f"first_frame must be a FirstFrame or a dict of its fields, got {type(first_frame)}")
    if not (isinstance(num_frames, int) and isinstance(height, int) and isinstance(width, int)):
        raise BadInputError(f"num_frames, height and width must be ints, got {num_frames!r}, {height!r}, {width!r}")
    if num_frames < 1 or height < 1 or width < 1:
        raise BadInputError(f"num_frames, height and width must be >= 1, got {num_frames}, {height}, {width}")
    steps = np.arange(num_frames, dtype=np.float64)
    cy = first_frame.center[0] + steps * motion.dy
    cx = first_frame.center[1] + steps * motion.dx
    if min(cy.min(), cx.min()) < 0 or max(cy.max(), cx.max()) > 1:
        raise BadInputError(
            f"the sprite centre leaves the frame within {num_frames} frames (centre {first_frame.center}, "
            f"motion {motion.as_dict()}); start further from the edge or use fewer frames"
        )
    short = min(height, width)
    ys = np.arange(height, dtype=np.float64)[None, :, None] + 0.5
    xs = np.arange(width, dtype=np.float64)[None, None, :] + 0.5
    # Background: static texture in units of the short side, centred on the frame.
    bx, by = (xs[0] - width / 2) / short, (ys[0] - height / 2) / short
    t_bg = _pattern(first_frame.background_pattern, bx, by, first_frame.background_freq, first_frame.background_angle)
    c0, c1 = (np.array(PALETTE[c])[:, None, None] for c in first_frame.background)
    background = c0 * (1 - t_bg) + c1 * t_bg
    # Sprite: coordinates in units of its size, relative to its moving centre, so the texture moves with it.
    size_px = first_frame.size * short
    sx = (xs - cx[:, None, None] * width) / size_px
    sy = (ys - cy[:, None, None] * height) / size_px
    dist = _sdf(first_frame.shape, sx, sy) * size_px  # in pixels
    coverage = np.clip(0.5 - dist, 0, 1)[:, None]
    t_sp = _pattern(first_frame.pattern, sx, sy, first_frame.pattern_freq, first_frame.pattern_angle)[:, None]
    sprite = np.array(PALETTE[first_frame.color])[None, :, None, None] * (1 - SHADE * t_sp)
    frames = background[None] * (1 - coverage) + sprite * coverage
    info = {**motion.as_dict(), "dx_px": motion.dx * width, "dy_px": motion.dy * height}
    caption = caption_for(first_frame, motion)
    return {
        "frames": torch.from_numpy((frames * 2 - 1).astype(np.float32)),
        "masks": torch.from_numpy(dist <= 0),
        "caption": caption,
        "motion": info,
        "first_frame": first_frame,
    }


class MotionClips:
    """A deterministic set of `num_items` motion clips (see the module docstring for the conventions).

    Clip `i` depends on `(seed, i, num_frames)`: a sprite (shape from `SHAPES`, colour from `PALETTE`, size in
    `SIZE_RANGE`, a texture from `PATTERNS`) over a background textured with two other colours, moving in one of the
    8 `DIRECTIONS` at one of the `SPEEDS`, starting where its whole path over `num_frames` stays inside the frame.

    Args:
        num_items (`int`): number of clips.
        seed (`int`): seed of the clip parameters.
        num_frames (`int`): frames per clip, 8 to 16.
        size (`tuple[int, int]`): default `(height, width)` for `render` and `__getitem__`.
        speeds (`Mapping[str, float]`, optional): speed word -> fraction of the frame per frame; default `SPEEDS`.
            The fastest times `num_frames - 1`, plus the largest sprite, must fit in the frame.
        directions (`Sequence[str]`, optional): the directions to draw from (default: all 8 `DIRECTIONS`).

    Example:
        >>> clips = MotionClips(2, seed=3, num_frames=8, size=(16, 16))
        >>> clip = clips[1]
        >>> tuple(clip["frames"].shape), clip["motion"]["direction"] in clip["caption"]
        ((8, 3, 16, 16), True)
    """

    def __init__(
        self,
        num_items: int,
        seed: int = 0,
        num_frames: int = 8,
        size: tuple[int, int] = (32, 32),
        speeds: Mapping[str, float] | None = None,
        directions: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(num_items, int) or num_items < 1:
            raise BadInputError(f"num_items must be a positive int, got {num_items!r}")
        if not isinstance(num_frames, int) or not MIN_FRAMES <= num_frames <= MAX_FRAMES:
            raise BadInputError(f"num_frames must be an int in [{MIN_FRAMES}, {MAX_FRAMES}], got {num_frames!r}")
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise BadInputError(f"size must be (height, width) positive ints, got {size!r}")
        speeds = dict(SPEEDS if speeds is None else speeds)
        room = 1 - SIZE_RANGE[1] - 2 * MARGIN
        if not speeds or min(speeds.values()) < 0 or (num_frames - 1) * max(speeds.values()) > room:
            raise BadInputError(
                f"speeds must be non-empty and >= 0 with (num_frames - 1) * max speed <= {room:.2f}, "
                f"got {speeds} for {num_frames} frames"
            )
        self.directions = tuple(DIRECTIONS if directions is None else directions)
        if not self.directions:
            raise BadInputError(f"directions must name at least one of {', '.join(DIRECTIONS)}")
        for direction in self.directions:
            _choice("direction", direction, DIRECTIONS)
        self.num_items, self.seed, self.num_frames, self.size = num_items, int(seed), num_frames, tuple(size)
        self.speeds = speeds

    def __len__(self) -> int:
        return self.num_items

    def scene(self, index: int) -> tuple[FirstFrame, Motion]:
        """The first-frame parameters and the motion of clip `index`."""
        if not -self.num_items <= index < self.num_items:
            raise IndexError(f"clip index {index} out of range for {self.num_items} clips")
        rng = np.random.default_rng([self.seed, index % self.num_items, 0x1F2A])
        colors = [str(c) for c in rng.choice(list(PALETTE), size=3, replace=False)]
        direction = str(rng.choice(self.directions))
        speed = str(rng.choice(list(self.speeds)))
        motion = Motion(direction, speed, float(self.speeds[speed]))
        size = float(rng.uniform(*SIZE_RANGE))
        center = []
        for step in (motion.dy, motion.dx):
            travel = (self.num_frames - 1) * step
            lo, hi = MARGIN + size / 2 + max(0.0, -travel), 1 - MARGIN - size / 2 - max(0.0, travel)
            center.append(float(rng.uniform(lo, hi)))
        first = FirstFrame(
            shape=str(rng.choice(SHAPES)),
            color=colors[0],
            size=size,
            center=(center[0], center[1]),
            pattern=str(rng.choice(PATTERNS)),
            pattern_freq=float(rng.uniform(1.5, 3.0)),
            pattern_angle=float(rng.uniform(0, math.pi)),
            background=(colors[1], colors[2]),
            background_pattern=str(rng.choice(PATTERNS)),
            background_freq=float(rng.uniform(1.5, 4.0)),
            background_angle=float(rng.uniform(0, math.pi)),
        )
        return first, motion

    def caption(self, index: int) -> str:
        """The caption of clip `index`, e.g. "a red square moving right slowly"."""
        return caption_for(*self.scene(index))

    def render(
        self, index: int, height: int | None = None, width: int | None = None, num_frames: int | None = None
    ) -> dict:
        """Draw clip `index` (default size and length: the dataset's); see `render_clip` for the returned dict."""
        first, motion = self.scene(index)
        height = self.size[0] if height is None else height
        width = self.size[1] if width is None else width
        return render_clip(first, motion, self.num_frames if num_frames is None else num_frames, height, width)

    def __getitem__(self, index: int) -> dict:
        return self.render(index)

    def __repr__(self) -> str:
        return f"MotionClips({self.num_items}, seed={self.seed}, num_frames={self.num_frames}, size={self.size})"
