"""Fitting the caller's own background to the photo's frame, colours, and the background-choice rules."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from deployments.http.form_models import BackgroundForm
from pipelines.background.background_choice import (
    OUTPUTS,
    BackgroundChoice,
    own_background,
    resolve_background_choice,
)
from pipelines.background.background_fit import (
    FITS,
    POSITIONS,
    FitPlan,
    fit_background_image,
    hex_color,
    parse_hex_color,
    plan_fit,
)
from pipelines.common.errors import InvalidInputError
from vividflow.client import options as client_options

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def quadrants(width: int, height: int) -> np.ndarray:
    """Left half red / right half blue on top, green / white below: where a pixel came from shows."""
    image = np.empty((height, width, 3), np.uint8)
    image[: height // 2, : width // 2] = RED
    image[: height // 2, width // 2 :] = BLUE
    image[height // 2 :, : width // 2] = GREEN
    image[height // 2 :, width // 2 :] = WHITE
    return image


def stripes(width: int, height: int) -> np.ndarray:
    """Each column holds its own x in the red channel and each row its y in green: exact provenance."""
    xx, yy = np.meshgrid(np.arange(width), np.arange(height))
    return np.dstack([xx, yy, np.zeros_like(xx)]).astype(np.uint8)


# --- the plan: pure integer maths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "crop"),
    [
        ("center", (50, 0, 150, 100)),
        ("left", (0, 0, 100, 100)),
        ("right", (100, 0, 200, 100)),
        ("top", (50, 0, 150, 100)),  # the vertical axis has nothing to crop: top is the same as center
        ("bottom", (50, 0, 150, 100)),
    ],
)
def test_cover_of_a_wide_source_crops_left_right(position, crop):
    assert plan_fit((200, 100), (50, 50), "cover", position) == FitPlan(crop=crop, size=(50, 50), offset=(0, 0))


@pytest.mark.parametrize(
    ("position", "crop"),
    [("center", (0, 30, 100, 130)), ("top", (0, 0, 100, 100)), ("bottom", (0, 60, 100, 160))],
)
def test_cover_of_a_tall_source_crops_top_bottom(position, crop):
    assert plan_fit((100, 160), (300, 300), "cover", position) == FitPlan(crop=crop, size=(300, 300), offset=(0, 0))


def test_cover_keeps_the_frames_aspect_ratio_in_the_crop():
    plan = plan_fit((4000, 3000), (1920, 1080), "cover")
    x0, y0, x1, y1 = plan.crop
    assert (x1 - x0, y1 - y0) == (4000, 2250) and (x0, y0) == (0, 375)
    assert plan.size == (1920, 1080)


@pytest.mark.parametrize(
    ("position", "offset"),
    [("center", (0, 25)), ("top", (0, 0)), ("bottom", (0, 50)), ("left", (0, 25)), ("right", (0, 25))],
)
def test_contain_of_a_wide_source_letterboxes_top_and_bottom(position, offset):
    assert plan_fit((200, 100), (100, 100), "contain", position) == FitPlan((0, 0, 200, 100), (100, 50), offset)


@pytest.mark.parametrize(("position", "offset"), [("center", (37, 0)), ("left", (0, 0)), ("right", (75, 0))])
def test_contain_of_a_tall_source_pillarboxes_left_and_right(position, offset):
    # 100x200 in 125x100 -> 50x100; 75 spare columns: centred is 37 left, 38 right (the extra one right)
    assert plan_fit((100, 200), (125, 100), "contain", position) == FitPlan((0, 0, 100, 200), (50, 100), offset)


def test_stretch_ignores_the_aspect_ratio_and_position():
    for position in POSITIONS:
        assert plan_fit((30, 500), (64, 48), "stretch", position) == FitPlan((0, 0, 30, 500), (64, 48), (0, 0))


def test_an_extreme_aspect_ratio_never_plans_a_huge_intermediate():
    # 16x5000 covering 5000x5000 would be 5000x1.56M pixels if scaled before cropping
    plan = plan_fit((16, 5000), (5000, 5000), "cover")
    assert plan.crop == (0, 2492, 16, 2508) and plan.size == (5000, 5000)
    assert plan_fit((16, 5000), (5000, 5000), "contain").size == (16, 5000)


@pytest.mark.parametrize(("fit", "position", "field"), [("fill", "center", "fit"), ("cover", "middle", "position")])
def test_unknown_fit_or_position_is_refused(fit, position, field):
    with pytest.raises(InvalidInputError) as caught:
        plan_fit((10, 10), (10, 10), fit, position)
    bad = fit if field == "fit" else position
    assert caught.value.field == field and repr(bad) in caught.value.message


# --- the pixels ----------------------------------------------------------------------------------------------


def test_same_size_cover_is_the_picture_itself():
    source = quadrants(64, 48)
    assert np.array_equal(fit_background_image(source, 64, 48, "cover"), source)


@pytest.mark.parametrize(("position", "colour"), [("left", RED), ("right", BLUE)])
def test_cover_left_and_right_keep_that_side(position, colour):
    # top half of a 200x100 picture: red | blue; a 100x100 frame shows one half of it
    out = fit_background_image(quadrants(200, 100), 100, 100, "cover", position)
    assert out.shape == (100, 100, 3)
    assert np.all(out[:45] == colour) and not np.any(np.all(out[:45] == (BLUE if colour == RED else RED), axis=-1))


def test_cover_centre_takes_the_middle_columns_exactly():
    out = fit_background_image(stripes(200, 40), 40, 40, "cover")  # no resize: a pure crop of columns 80..119
    assert np.array_equal(out[:, :, 0], np.tile(np.arange(80, 120, dtype=np.uint8), (40, 1)))
    assert np.array_equal(out[:, :, 1], np.tile(np.arange(40, dtype=np.uint8)[:, None], (1, 40)))


def test_cover_bottom_takes_the_last_rows():
    out = fit_background_image(stripes(30, 90), 30, 30, "cover", "bottom")
    assert np.array_equal(out[:, 0, 1], np.arange(60, 90, dtype=np.uint8))


@pytest.mark.parametrize(
    ("position", "picture_rows"), [("center", slice(25, 75)), ("top", slice(0, 50)), ("bottom", slice(50, 100))]
)
def test_contain_letterbox_is_the_fill_colour(position, picture_rows):
    source = np.full((50, 100, 3), 200, np.uint8)  # 100x50 into 100x100: a 50-row picture, 50 rows of fill
    out = fit_background_image(source, 100, 100, "contain", position, fill=(30, 144, 255))
    assert out.shape == (100, 100, 3)
    inside = np.zeros(100, bool)
    inside[picture_rows] = True
    assert np.all(out[inside] == 200)
    assert np.all(out[~inside] == (30, 144, 255))


def test_contain_default_fill_is_black_and_the_picture_is_scaled_whole():
    out = fit_background_image(stripes(60, 120), 60, 60, "contain")  # 60x120 -> 30x60, pillarbox 15 | 15
    assert np.all(out[:, :15] == 0) and np.all(out[:, 45:] == 0)
    # the whole source is inside: the first and last rows and columns of the picture are its edges
    assert out[0, 15, 1] <= 2 and out[-1, 15, 1] >= 116
    assert out[30, 15, 0] <= 2 and out[30, 44, 0] >= 56


def test_stretch_fills_the_frame_with_the_whole_picture():
    out = fit_background_image(quadrants(40, 200), 100, 50, "stretch")
    assert out.shape == (50, 100, 3)
    assert tuple(out[5, 5]) == RED and tuple(out[5, 95]) == BLUE
    assert tuple(out[45, 5]) == GREEN and tuple(out[45, 95]) == WHITE


def test_large_backgrounds_shrink_without_moire():
    # fine 1-px checkerboard shrunk 8x: the area filter averages it to grey instead of aliasing
    checker = ((np.indices((800, 800)).sum(axis=0) % 2) * 255).astype(np.uint8)
    out = fit_background_image(np.dstack([checker] * 3), 100, 100, "cover")
    assert np.abs(out.astype(int) - 128).max() <= 2


def test_a_non_rgb_background_is_refused():
    with pytest.raises(InvalidInputError) as caught:
        fit_background_image(np.zeros((10, 10), np.uint8), 5, 5)
    assert caught.value.field == "background_image"


# --- colours ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rgb"),
    [("#1e90ff", (30, 144, 255)), ("#1E90FF", (30, 144, 255)), ("#f80", (255, 136, 0)), (" #000 ", (0, 0, 0))],
)
def test_hex_colours(text, rgb):
    assert parse_hex_color(text) == rgb
    assert parse_hex_color(hex_color(rgb)) == rgb


@pytest.mark.parametrize("text", ["1e90ff", "#1e90f", "#ggg", "#1e90ff00", "red", "", "#"])
def test_bad_hex_colours_name_the_field(text):
    with pytest.raises(InvalidInputError) as caught:
        parse_hex_color(text)
    assert caught.value.field == "background_color" and "hex colour" in caught.value.message


# --- which background: the rules --------------------------------------------------------------------------------


def test_sources_and_their_records():
    assert resolve_background_choice(scene_id="white_studio").record() == {"source": "scene", "output": "composite"}
    assert resolve_background_choice(prompt="a park", scene_id="x").source == "scene"
    assert resolve_background_choice(prompt="a park").source == "prompt"
    assert resolve_background_choice(has_background_image=True).record() == {
        "source": "image",
        "output": "composite",
        "fit": "cover",
        "position": "center",
    }
    contain = resolve_background_choice(has_background_image=True, fit="contain", background_color="#fff")
    assert contain.record() == {
        "source": "image",
        "output": "composite",
        "fit": "contain",
        "position": "center",
        "fill": "#ffffff",
    }
    assert resolve_background_choice(has_background_image=True, fit="contain").record()["fill"] == "#000000"
    assert resolve_background_choice(background_color="#F80").record() == {
        "source": "color",
        "output": "composite",
        "color": "#ff8800",
    }
    cutout = resolve_background_choice(output="cutout")
    assert cutout.record() == {"source": "none", "output": "cutout"} and not cutout.generated
    for record in (contain.record(), cutout.record(), resolve_background_choice(background_color="#123").record()):
        assert BackgroundChoice.from_record(record).record() == record


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "prompt"),
        ({"negative_prompt": "blur"}, "prompt"),
        ({"has_background_image": True, "scene_id": "white_studio"}, "background_image"),
        ({"has_background_image": True, "prompt": "a park"}, "background_image"),
        ({"has_background_image": True, "negative_prompt": "blur"}, "background_image"),
        ({"background_color": "#fff", "prompt": "a park"}, "background_color"),
        ({"has_background_image": True, "background_color": "#fff"}, "background_color"),  # cover: no letterbox
        ({"has_background_image": True, "background_color": "#fff", "fit": "stretch"}, "background_color"),
        ({"background_color": "#fff", "fit": "contain"}, "fit"),
        ({"prompt": "a park", "position": "top"}, "position"),
        ({"background_color": "white"}, "background_color"),
        ({"has_background_image": True, "fit": "zoom"}, "fit"),
        ({"has_background_image": True, "position": "middle"}, "position"),
        ({"output": "mask"}, "output"),
        ({"output": "cutout", "prompt": "a park"}, "prompt"),
        ({"output": "cutout", "has_background_image": True}, "background_image"),
        ({"output": "cutout", "background_color": "#000"}, "background_color"),
        ({"output": "cutout", "fit": "cover"}, "fit"),
    ],
)
def test_conflicts_and_bad_values_name_the_field(fields, field):
    with pytest.raises(InvalidInputError) as caught:
        resolve_background_choice(**fields)
    assert caught.value.field == field, caught.value.message
    assert f"`{field}`" in caught.value.message


def test_blank_text_counts_as_not_given():
    assert resolve_background_choice(background_color="#000", prompt=" ", negative_prompt="").source == "color"


def test_own_backgrounds_are_the_frame_size():
    colour = own_background(resolve_background_choice(background_color="#1e90ff"), 33, 17)
    assert colour.shape == (17, 33, 3) and np.all(colour == (30, 144, 255))
    choice = resolve_background_choice(has_background_image=True, fit="contain", background_color="#0f0")
    out = own_background(choice, 100, 100, np.full((50, 100, 3), 9, np.uint8))
    assert out.shape == (100, 100, 3) and tuple(out[0, 0]) == GREEN and tuple(out[50, 50]) == (9, 9, 9)
    with pytest.raises(ValueError):
        own_background(resolve_background_choice(prompt="a park"), 10, 10)


def test_the_form_and_the_client_offer_exactly_these_choices():
    hints = typing.get_type_hints(BackgroundForm)
    assert typing.get_args(hints["fit"]) == FITS
    assert typing.get_args(hints["position"]) == POSITIONS
    assert typing.get_args(hints["output"]) == OUTPUTS
    # and the client and CLI offer the same
    assert typing.get_args(client_options.Fit) == FITS
    assert typing.get_args(client_options.Position) == POSITIONS
    assert typing.get_args(client_options.Output) == OUTPUTS
