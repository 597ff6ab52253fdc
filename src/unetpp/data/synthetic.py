"""Procedural retinal fundus photographs with optic disc and cup masks: the embedded default data.

Nothing can be downloaded on our machines, so the default pipeline trains on these. Each image has
a circular field of view on black, an orange-red background with uneven illumination and
vignetting, a vessel tree that leaves the disc and crosses it, a bright yellowish elliptical disc
with a soft rim, a paler cup inside it (vertical cup-to-disc ratio 0.2-0.9), and distractors that
are not disc: bright lesions and a specular reflection. Blur, noise and JPEG artefacts vary.
Everything is drawn from `numpy.random.default_rng(seed + index)`: the same seed, the same images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


@dataclass(frozen=True)
class FundusSample:
    image: np.ndarray  # (H, W, 3) uint8
    masks: np.ndarray  # (2, H, W) bool: disc, cup
    cup_to_disc: float  # vertical cup-to-disc ratio of the masks


def _ellipse_distance(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float):
    """Normalised distance: < 1 inside the ellipse, 1 on its rim."""
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u, v = dx * c + dy * s, -dx * s + dy * c
    return np.sqrt((u / rx) ** 2 + (v / ry) ** 2)


def _soft_inside(distance: np.ndarray, softness: float) -> np.ndarray:
    """1 well inside an ellipse, 0 well outside, a logistic ramp of width `softness` across the rim."""
    return 1 / (1 + np.exp(np.clip((distance - 1) / softness, -50, 50)))


def _vessel_tree(rng: np.random.Generator, size: int, cy: float, cx: float) -> np.ndarray:
    """A soft vessel map in [0, 1]: arcades leaving the disc up and down, branching as they go."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    stack = []
    for direction in (-1, 1):  # superior and inferior arcades, temporal and nasal branches
        for side in (-1, 1):
            heading = np.pi / 2 * direction + side * rng.uniform(0.3, 0.9)
            stack.append((cx, cy, heading, size * rng.uniform(0.010, 0.016), 0))
    while stack:
        x, y, heading, width, depth = stack.pop()
        points = [(x, y)]
        for _ in range(int(rng.integers(8, 16))):
            heading += rng.normal(0, 0.18)
            step = size * rng.uniform(0.02, 0.04)
            x, y = x + step * np.cos(heading), y + step * np.sin(heading)
            points.append((x, y))
        draw.line(points, fill=int(255 * rng.uniform(0.7, 1.0)), width=max(1, round(width)), joint="curve")
        if depth < 2:
            for _ in range(int(rng.integers(1, 3))):
                px, py = points[int(rng.integers(2, len(points)))]
                stack.append((px, py, heading + rng.choice([-1, 1]) * rng.uniform(0.4, 1.0), width * 0.65, depth + 1))
    blurred = canvas.filter(ImageFilter.GaussianBlur(radius=size / 400))
    return np.asarray(blurred, dtype=np.float32) / 255.0


def _smooth_field(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    """Low-frequency illumination: a tilted plane plus a broad Gaussian hot spot."""
    gy, gx = rng.normal(0, 0.25, 2)
    plane = gy * (yy / size - 0.5) + gx * (xx / size - 0.5)
    hy, hx = rng.uniform(0.3, 0.7, 2) * size
    spot = np.exp(-(((yy - hy) ** 2 + (xx - hx) ** 2) / (2 * (size * rng.uniform(0.2, 0.4)) ** 2)))
    return 1.0 + plane + rng.uniform(0.0, 0.25) * spot


def generate_fundus(index: int, size: int = 256, seed: int = 0) -> FundusSample:
    """The `index`-th fundus photograph of the stream `seed`, `size` pixels square."""
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = size / 2
    fov_r = size * rng.uniform(0.44, 0.49)
    r_fov = np.sqrt((yy - centre) ** 2 + (xx - centre) ** 2)
    fov = np.clip((fov_r - r_fov) / (size * 0.005), 0, 1)

    base = np.array([rng.uniform(0.62, 0.85), rng.uniform(0.22, 0.38), rng.uniform(0.06, 0.16)], np.float32)
    vignette = 1 - rng.uniform(0.3, 0.6) * (r_fov / fov_r) ** 2
    texture = np.asarray(
        Image.fromarray((rng.random((size // 8, size // 8)) * 255).astype(np.uint8)).resize(
            (size, size), Image.BICUBIC
        ),
        dtype=np.float32,
    )
    img = base * (_smooth_field(rng, yy, xx, size) * vignette * (0.93 + 0.14 * texture / 255))[..., None]

    # optic disc: an ellipse left or right of centre (either eye), a soft bright rim
    cy = centre + rng.uniform(-0.12, 0.12) * size
    cx = centre + rng.choice([-1, 1]) * rng.uniform(0.10, 0.24) * size
    ry = size * rng.uniform(0.075, 0.115)
    rx = ry * rng.uniform(0.82, 1.05)
    angle = rng.uniform(-0.3, 0.3)
    d_disc = _ellipse_distance(yy, xx, cy, cx, ry, rx, angle)
    disc_alpha = _soft_inside(d_disc, rng.uniform(0.04, 0.09))
    disc_colour = np.array([rng.uniform(0.88, 1.0), rng.uniform(0.62, 0.8), rng.uniform(0.3, 0.5)], np.float32)
    img = img * (1 - disc_alpha[..., None]) + disc_colour * disc_alpha[..., None]

    # cup: paler, inside the disc, slightly off centre; its vertical ratio spans the clinical range
    ratio = rng.uniform(0.2, 0.9)
    off = (1 - ratio) * 0.4
    ccy, ccx = cy + rng.uniform(-off, off) * ry, cx + rng.uniform(-off, off) * rx
    d_cup = _ellipse_distance(yy, xx, ccy, ccx, ratio * ry, ratio * rx * rng.uniform(0.9, 1.1), angle)
    cup_alpha = _soft_inside(d_cup, rng.uniform(0.05, 0.1))
    cup_colour = np.array([1.0, rng.uniform(0.85, 0.97), rng.uniform(0.6, 0.85)], np.float32)
    img = img * (1 - 0.8 * cup_alpha[..., None]) + 0.8 * cup_colour * cup_alpha[..., None]

    # the central vessels leave through the cup's nasal rim and are dimmer across the pale cup, so a
    # small cup stays visible instead of being painted over by the trunks
    nasal = 1.0 if cx < centre else -1.0
    vessels = _vessel_tree(rng, size, ccy, ccx + nasal * ratio * rx) * (1 - 0.7 * cup_alpha)
    vessel_colour = np.array([0.45, 0.08, 0.05], np.float32) * rng.uniform(0.7, 1.1)
    img = img * (1 - 0.85 * vessels[..., None]) + 0.85 * vessel_colour * vessels[..., None]

    # distractors: exudate-like bright lesions and a specular reflection, away from the disc
    for _ in range(int(rng.integers(0, 7))):
        ly, lx = centre + rng.uniform(-0.35, 0.35, 2) * size
        if _ellipse_distance(np.array(ly), np.array(lx), cy, cx, ry, rx, angle) < 1.6:
            continue
        lr = size * rng.uniform(0.006, 0.02)
        blob = np.exp(-((yy - ly) ** 2 + (xx - lx) ** 2) / (2 * lr**2))
        img = img * (1 - blob[..., None]) + np.array([1.0, 0.92, 0.55], np.float32) * blob[..., None]
    if rng.random() < 0.6:
        sy, sx = centre + rng.uniform(-0.3, 0.3, 2) * size
        d = np.abs(np.sqrt((yy - sy) ** 2 + (xx - sx) ** 2) - size * rng.uniform(0.1, 0.25))
        img = img + rng.uniform(0.05, 0.15) * np.exp(-(d**2) / (2 * (size * 0.01) ** 2))[..., None]

    img = np.clip(img * fov[..., None], 0, 1)
    pil = Image.fromarray((img * 255).astype(np.uint8))
    pil = pil.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0, 1.2)))
    noisy = np.asarray(pil, np.float32) + rng.normal(0, rng.uniform(1, 6), (size, size, 3))
    pil = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(rng.integers(45, 96)))
    image = np.asarray(Image.open(buf).convert("RGB"))

    disc = d_disc < 1
    cup = (d_cup < 1) & disc
    return FundusSample(image=image, masks=np.stack([disc, cup]), cup_to_disc=vertical_cup_to_disc(disc, cup))


def vertical_cup_to_disc(disc: np.ndarray, cup: np.ndarray) -> float:
    """Vertical extent of the cup over that of the disc (0 when either is empty)."""
    rows_disc, rows_cup = np.flatnonzero(disc.any(axis=1)), np.flatnonzero(cup.any(axis=1))
    if rows_disc.size == 0 or rows_cup.size == 0:
        return 0.0
    return float((rows_cup[-1] - rows_cup[0] + 1) / (rows_disc[-1] - rows_disc[0] + 1))
