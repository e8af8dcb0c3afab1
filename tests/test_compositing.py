"""The compositing engine and the composition controls, on small synthetic pictures with known mattes."""

from __future__ import annotations

import io
from functools import partial

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from deployments.config import BackgroundGeneratorConfig
from pipelines.background.compositor import (
    composite_onto_background,
    cutout_rgba,
    linear_to_srgb,
    plain_alpha_blend,
    srgb_to_linear,
)
from pipelines.background.mask_controls import apply_composition, mask_preview_png
from pipelines.background.sdxl import BackgroundModelConfig
from pipelines.common.errors import InvalidInputError

SIZE = 96


def _field(rng: np.random.Generator, colour, spread: float = 0.3) -> np.ndarray:
    """A textured colour field (coarse random grid upsampled), uint8 SIZE x SIZE x 3."""
    grid = rng.random((6, 6, 1)).astype(np.float32)
    shade = cv2.resize(grid, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)[..., None]
    return np.clip(np.float32(colour) * (1 + spread * (shade - 0.5)), 0, 255).astype(np.uint8)


def _soft_disc() -> np.ndarray:
    """A disc with a wide soft rim, like fur or motion blur."""
    disc = np.zeros((SIZE, SIZE), np.float32)
    cv2.circle(disc, (SIZE // 2, SIZE // 2), SIZE // 4, 1.0, -1)
    return np.clip(cv2.GaussianBlur(disc, (0, 0), 3.0), 0, 1)


def _over(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Linear-light-defined composite."""
    a = alpha[..., None]
    return linear_to_srgb(a * srgb_to_linear(fg) + (1 - a) * srgb_to_linear(bg))


def _over_srgb(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """sRGB-defined composite: I = a*F + (1 - a)*B on the 8-bit sRGB values, as matting datasets define alpha."""
    a = alpha.astype(np.float64)[..., None]
    return np.rint(a * fg.astype(np.float64) + (1 - a) * bg.astype(np.float64)).astype(np.uint8)


MIXES = {"srgb": _over_srgb, "linear": _over}
ENGINES = [
    pytest.param(composite_onto_background, id="engine-default"),
    pytest.param(partial(composite_onto_background, blend_space="srgb"), id="engine-srgb"),
    pytest.param(partial(composite_onto_background, blend_space="linear"), id="engine-linear"),
    pytest.param(plain_alpha_blend, id="plain"),
]


@pytest.fixture(scope="module")
def green_screen():
    rng = np.random.default_rng(3)
    fg = _field(rng, (220, 170, 120))
    old = _field(rng, (20, 180, 70), 0.1)
    new = _field(rng, (90, 60, 160))
    alpha = _soft_disc()
    return fg, alpha, old, new


@pytest.mark.parametrize("blend", ENGINES)
def test_shapes_dtypes_and_background_resize(blend, green_screen):
    fg, alpha, old, new = green_screen
    photo = _over(fg, alpha, old)
    big_bg = cv2.resize(new, (SIZE * 2, SIZE + 30))
    out = blend(photo, big_bg, alpha)
    assert out.shape == photo.shape and out.dtype == np.uint8


@pytest.mark.parametrize("blend", ENGINES)
def test_transparent_gives_background_and_opaque_gives_foreground(blend, green_screen):
    fg, _, old, new = green_screen
    zeros = np.zeros((SIZE, SIZE), np.float32)
    np.testing.assert_array_equal(blend(fg, new, zeros), new)
    np.testing.assert_array_equal(blend(fg, new, zeros + 1), fg)
    # Mixed matte: every exactly-0 pixel is background, every exactly-1 pixel is foreground.
    alpha = _soft_disc()
    out = blend(fg, new, alpha)
    np.testing.assert_array_equal(out[alpha == 0], new[alpha == 0])
    np.testing.assert_array_equal(out[alpha == 1], fg[alpha == 1])


@pytest.mark.parametrize("space", ["srgb", "linear"])
def test_soft_alpha_stays_soft(space):
    # Flat colours make the effective matte of the output measurable: out = a*F + (1-a)*B, in the
    # values of the space the matte was defined (and blended) in.
    f_col, old_col, new_col = np.float32([230, 200, 60]), np.float32([20, 180, 70]), np.float32([40, 40, 200])
    alpha = _soft_disc()
    fg = np.full((SIZE, SIZE, 3), f_col, np.uint8)
    photo = MIXES[space](fg, alpha, np.full_like(fg, old_col))
    out = composite_onto_background(photo, np.full_like(fg, new_col), alpha, **BLEND_OPTIONS[space])
    values = srgb_to_linear if space == "linear" else (lambda rgb: rgb.astype(np.float32) / 255.0)
    f_val, b_val = values(f_col.astype(np.uint8)), values(new_col.astype(np.uint8))
    effective = ((values(out) - b_val) @ (f_val - b_val)) / float((f_val - b_val) @ (f_val - b_val))
    soft = (alpha > 0.02) & (alpha < 0.98)
    kept_soft = (effective > 0.01) & (effective < 0.99)
    assert soft.sum() > 500
    assert (kept_soft & soft).sum() >= 0.95 * soft.sum()
    assert np.abs(effective - alpha)[soft].mean() < 0.03


def _edge_de(target: np.ndarray, out: np.ndarray, alpha: np.ndarray) -> float:
    edge = (alpha > 0.01) & (alpha < 0.99)
    return float(deltaE_ciede2000(rgb2lab(target[edge] / 255.0), rgb2lab(out[edge] / 255.0)).mean())


# The default (no keyword) must be the sRGB blend: sRGB-defined mattes go through it unconfigured.
BLEND_OPTIONS = {"srgb": {}, "linear": {"blend_space": "linear"}}


@pytest.mark.parametrize("space", ["srgb", "linear"])
def test_engine_beats_plain_blend_at_the_edges(space, green_screen):
    fg, alpha, old, new = green_screen
    mix = MIXES[space]
    photo, target = mix(fg, alpha, old), mix(fg, alpha, new)
    engine = _edge_de(target, composite_onto_background(photo, new, alpha, **BLEND_OPTIONS[space]), alpha)
    plain = _edge_de(target, plain_alpha_blend(photo, new, alpha), alpha)
    assert engine < 0.5 * plain, (engine, plain)


def _strands_and_outline() -> tuple[np.ndarray, np.ndarray]:
    """Semi-transparent dark strands over a light backdrop and a dark anti-aliased outline: where the
    blending space shows most (a linear-light blend of an sRGB-defined matte pales and thins both)."""
    canvas = np.zeros((SIZE * 4, SIZE * 4), np.uint8)
    cv2.circle(canvas, (SIZE * 2, SIZE * 2), SIZE, 255, -1)
    rng = np.random.default_rng(5)
    for _ in range(40):
        x0, y0 = rng.integers(0, SIZE * 4, 2)
        x1, y1 = rng.integers(0, SIZE * 4, 2)
        cv2.line(canvas, (int(x0), int(y0)), (int(x1), int(y1)), int(rng.integers(90, 200)), 2)
    alpha = cv2.resize(canvas, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    fg = _field(rng, (60, 40, 30), 0.4)  # dark hair / ink
    return fg, alpha


@pytest.mark.parametrize(("defined_in", "other"), [("srgb", "linear"), ("linear", "srgb")])
def test_blending_in_the_space_the_matte_was_defined_in_reproduces_it(defined_in, other):
    fg, alpha = _strands_and_outline()
    rng = np.random.default_rng(11)
    old, new = _field(rng, (235, 230, 215), 0.1), _field(rng, (150, 200, 120), 0.3)
    mix = MIXES[defined_in]
    photo, target = mix(fg, alpha, old), mix(fg, alpha, new)
    right = composite_onto_background(photo, new, alpha, **BLEND_OPTIONS[defined_in])
    wrong = composite_onto_background(photo, new, alpha, blend_space=other)
    right_de, wrong_de = _edge_de(target, right, alpha), _edge_de(target, wrong, alpha)
    assert right_de < 1.0 and right_de < 0.3 * wrong_de, (right_de, wrong_de)
    for out in (right, wrong):  # core and background untouched either way
        np.testing.assert_array_equal(out[alpha == 0], new[alpha == 0])
        np.testing.assert_array_equal(out[alpha == 1], photo[alpha == 1])


def test_default_is_srgb_in_the_engine_and_the_background_job():
    fg, alpha = _strands_and_outline()
    rng = np.random.default_rng(2)
    old, new = _field(rng, (235, 230, 215), 0.1), _field(rng, (150, 200, 120), 0.3)
    photo = _over_srgb(fg, alpha, old)
    np.testing.assert_array_equal(
        composite_onto_background(photo, new, alpha), composite_onto_background(photo, new, alpha, blend_space="srgb")
    )
    model = BackgroundModelConfig(path="unused")
    assert BackgroundGeneratorConfig(model=model).blend_space == "srgb"
    assert BackgroundGeneratorConfig(model=model, blend_space="linear").blend_space == "linear"
    with pytest.raises(ValueError):
        BackgroundGeneratorConfig(model=model, blend_space="lab")
    with pytest.raises(ValueError, match="blend_space"):
        composite_onto_background(photo, new, alpha, blend_space="lab")


def test_bad_inputs_name_the_field(green_screen):
    fg, alpha, _, new = green_screen
    with pytest.raises(InvalidInputError) as err:
        composite_onto_background(fg, new, alpha[:-1])
    assert err.value.field == "mask"
    with pytest.raises(InvalidInputError) as err:
        composite_onto_background(fg.astype(np.float32), new, alpha)
    assert err.value.field == "image"
    with pytest.raises(InvalidInputError) as err:
        plain_alpha_blend(fg, new[..., :2], alpha)
    assert err.value.field == "background"


# ---------------------------------------------------------------- cut-outs (output=cutout)
def _over_cutout(rgba: np.ndarray, bg: np.ndarray, space: str) -> np.ndarray:
    """What an editor does with a straight-alpha RGBA PNG: a*RGB + (1 - a)*B, here in either space."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    if space == "linear":
        return linear_to_srgb(a * srgb_to_linear(rgba[..., :3]) + (1 - a) * srgb_to_linear(bg))
    return np.clip(np.rint(a * rgba[..., :3] + (1 - a) * bg.astype(np.float32)), 0, 255).astype(np.uint8)


def test_cutout_alpha_is_the_matte_and_rgb_is_straight():
    # A light subject with a wide soft rim photographed on black: in the rim the photo's pixels are dark
    # (a*F + (1-a)*0). Premultiplied RGB would keep them dark; straight alpha restores the subject colour.
    light = np.float32([240, 230, 210])
    alpha = _soft_disc()
    photo = _over_srgb(np.full((SIZE, SIZE, 3), light, np.uint8), alpha, np.zeros((SIZE, SIZE, 3), np.uint8))
    rgba = cutout_rgba(photo, alpha)
    assert rgba.shape == (SIZE, SIZE, 4) and rgba.dtype == np.uint8
    opaque, clear = alpha >= 1 - 1 / 512, alpha <= 1 / 512
    soft = ~opaque & ~clear
    assert soft.sum() > 500
    np.testing.assert_array_equal(rgba[..., 3][opaque], 255)
    np.testing.assert_array_equal(rgba[..., 3][clear], 0)
    assert np.abs(rgba[..., 3][soft].astype(int) - np.rint(alpha[soft] * 255)).max() <= 1
    assert rgba[..., 3][soft].min() >= 1 and rgba[..., 3][soft].max() <= 254  # soft stays soft after rounding
    np.testing.assert_array_equal(rgba[..., :3][opaque], photo[opaque])
    np.testing.assert_array_equal(rgba[..., :3][clear], 0)
    half = soft & (alpha > 0.3) & (alpha < 0.7)
    assert np.abs(rgba[..., :3][half].astype(int) - light).mean() < 6  # straight: the subject's colour
    assert photo[half].astype(int).mean() < 0.75 * light.mean()  # what premultiplied would have kept


@pytest.mark.parametrize("space", ["srgb", "linear"])
def test_cutout_over_a_background_is_the_services_own_composite(space, green_screen):
    fg, alpha, old, new = green_screen
    photo = MIXES[space](fg, alpha, old)
    rgba = cutout_rgba(photo, alpha, **BLEND_OPTIONS[space])
    ours = composite_onto_background(photo, new, alpha, **BLEND_OPTIONS[space])
    theirs = _over_cutout(rgba, new, space)
    # equal up to the 8-bit rounding of the stored colour and alpha
    assert np.abs(theirs.astype(int) - ours).max() <= 3
    assert np.abs(theirs.astype(int) - ours).mean() < 0.2


def test_cutout_checks_its_inputs(green_screen):
    fg, alpha, _, _ = green_screen
    with pytest.raises(InvalidInputError) as err:
        cutout_rgba(fg, alpha[:-1])
    assert err.value.field == "mask"
    with pytest.raises(ValueError, match="blend_space"):
        cutout_rgba(fg, alpha, blend_space="lab")


# ---------------------------------------------------------------- composition controls
def _subject(h: int = 80, w: int = 120) -> np.ndarray:
    alpha = np.zeros((h, w), np.float32)
    alpha[10:70, 20:100] = 1.0  # spans both halves
    return alpha


@pytest.mark.parametrize("mode", ["left", "right"])
def test_half_modes_keep_only_that_half(mode):
    alpha = _subject()
    out = apply_composition(alpha, mode=mode)
    w = alpha.shape[1]
    ramp = w // 10
    keep, drop = (slice(0, w // 2 - ramp // 2), slice(w // 2 + ramp // 2 + 1, w))[:: 1 if mode == "left" else -1]
    np.testing.assert_array_equal(out[:, keep], alpha[:, keep])
    assert out[:, drop].max() == 0.0
    middle = out[40, w // 2 - ramp // 2 : w // 2 + ramp // 2 + 1]
    assert ((middle > 0) & (middle < 1)).sum() >= ramp - 1  # a ramp, not a hard cut
    assert np.all(np.diff(middle) <= 0) if mode == "left" else np.all(np.diff(middle) >= 0)


def test_center_is_the_mask_and_full_is_a_small_central_ellipse():
    alpha = _subject()
    np.testing.assert_array_equal(apply_composition(alpha, "center", "person", 0), alpha)
    full = apply_composition(alpha, "full")
    assert full[40, 60] == 1.0 and full[0, 0] == 0.0 and full[-1, -1] == 0.0
    assert 0.05 < (full > 0.5).mean() < 0.3


def test_scene_focus_grows_the_mask():
    alpha = _subject()
    person = apply_composition(alpha, "center", "person")
    scene = apply_composition(alpha, "center", "scene")
    assert (scene > 0.5).sum() > (person > 0.5).sum()
    assert np.all(scene >= person)


def test_feather_widens_the_soft_band():
    alpha = _subject()
    soft = [((a > 0.01) & (a < 0.99)).sum() for a in (apply_composition(alpha, feather_px=f) for f in (0, 4, 12))]
    assert soft[0] == 0 and soft[0] < soft[1] < soft[2]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "top"}, "composition"),
        ({"mode": 3}, "composition"),
        ({"focus": "face"}, "focus"),
        ({"feather_px": 21}, "feather_px"),
        ({"feather_px": -1}, "feather_px"),
        ({"feather_px": 2.5}, "feather_px"),
        ({"feather_px": True}, "feather_px"),
    ],
)
def test_invalid_options_raise_with_field(kwargs, field):
    with pytest.raises(InvalidInputError) as err:
        apply_composition(_subject(), **kwargs)
    assert err.value.field == field


def test_preview_png_is_the_composited_mask():
    alpha = apply_composition(_subject(), "left", "person", 3)
    png = mask_preview_png(alpha)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "L" and image.size == (120, 80)
    np.testing.assert_array_equal(np.asarray(image), np.rint(alpha * 255).astype(np.uint8))
