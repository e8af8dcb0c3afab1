import pytest

from pipelines.common.errors import InvalidInputError
from pipelines.video.plan import frames_for_duration, output_size, plan_video, prepare_image
from pipelines.video.request import validate_video_params
from tests.images import gradient_image

# (input size, expected output size) for the rule in REFERENCE.md.
ASPECT_CASES = {
    "square": ((1000, 1000), (640, 640)),
    "near-square": ((1010, 1000), (640, 640)),
    "4:3": ((1024, 768), (832, 624)),
    "3:4": ((768, 1024), (624, 832)),
    "16:9 (cropped)": ((1920, 1080), (832, 480)),
    "21:9 (cropped)": ((2560, 1080), (832, 480)),
    "9:16 (cropped)": ((1080, 1920), (480, 832)),
    "1:3 (cropped)": ((300, 900), (480, 832)),
    "3:2": ((1200, 800), (832, 560)),
    "tiny 4:3": ((40, 30), (832, 624)),
    "huge 8:5": ((8000, 5000), (832, 528)),
}


@pytest.mark.parametrize("name", ASPECT_CASES)
def test_resolution_rule(name):
    (width, height), expected = ASPECT_CASES[name]
    crop, out_w, out_h = output_size(width, height)
    assert (out_w, out_h) == expected
    assert out_w % 16 == 0 and out_h % 16 == 0
    assert min(out_w, out_h) >= 480 and max(out_w, out_h) <= 832 or (out_w, out_h) == (640, 640)
    left, top, right, bottom = crop
    kept_aspect = (right - left) / (bottom - top)
    assert kept_aspect == pytest.approx(min(max(width / height, 480 / 832), 832 / 480), rel=0.01)


def test_wide_crop_is_centred():
    crop, _, _ = output_size(2560, 1080)
    left, _, right, _ = crop
    assert left == 2560 - right or abs(left - (2560 - right)) <= 1


@pytest.mark.parametrize(("duration", "frames"), [(0.5, 9), (1.0, 17), (2.0, 33), (3.0, 49), (4.0, 65), (5.0, 81)])
def test_frame_rule(duration, frames):
    assert frames_for_duration(duration) == frames
    assert (frames - 1) % 4 == 0


def test_frames_always_4k_plus_1_across_the_range():
    durations = [0.5 + i * 0.05 for i in range(91)]
    counts = [frames_for_duration(d) for d in durations]
    assert all((count - 1) % 4 == 0 for count in counts)
    assert counts == sorted(counts)


def test_prepare_image_matches_plan():
    image = gradient_image(1920, 1080)
    plan = plan_video(*image.size, 1.0)
    prepared = prepare_image(image, plan)
    assert prepared.size == (plan.width, plan.height) == (832, 480)
    assert plan.as_dict()["output"] == {"width": 832, "height": 480}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration_s", 0.4),
        ("duration_s", 60.5),  # the ceiling of any video (chained segments); each service sets its own below
        ("duration_s", float("nan")),
        ("steps", 3),
        ("steps", 13),
        ("guidance_scale", 0.5),
        ("guidance_scale_2", 25.0),
        ("seed", -1),
        ("prompt", "x" * 2001),
    ],
)
def test_out_of_range_parameters_name_the_field(field, value):
    params = dict(
        prompt="p", negative_prompt="", duration_s=1.0, steps=4, guidance_scale=1.0, guidance_scale_2=1.0, seed=1
    )
    params[field] = value
    with pytest.raises(InvalidInputError) as raised:
        validate_video_params(**params)
    assert raised.value.field == field
    assert field in raised.value.message
