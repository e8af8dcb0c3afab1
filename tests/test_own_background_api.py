"""Your own background through the HTTP app: a picture (cover/contain/stretch), a colour, or a cut-out.

The background worker runs for real (classic segmentation, fitting, compositing, PNG); SDXL is a spy that
fails the job if it is ever called, and the tests assert it never was. No model weights, no Ray.
"""

from __future__ import annotations

import io
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from deployments.background_generator import BackgroundGenerator
from deployments.config import BackgroundGeneratorConfig
from deployments.segmenter import SegmenterDeployment
from pipelines.background.sdxl import BackgroundModelConfig
from pipelines.background.segmentation.chain import SegmentationConfig
from pipelines.video.config import VideoModelConfig
from tests.api_harness import api_client, final, wait_for
from tests.images import encode

W, H = 320, 240
BACKDROP = (236, 236, 240)
RED, BLUE, DODGER = (230, 20, 20), (20, 20, 230), (30, 144, 255)


class SdxlSpy:
    """Stands in for SDXL: records each call and fails it, so a job that generated anything fails loudly."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        raise AssertionError("SDXL must not run for an own background or a cut-out")


class NoVideo:
    def __call__(self, *args, **kwargs):
        raise AssertionError("no video is rendered here")


def studio_photo() -> np.ndarray:
    image = np.full((H, W, 3), BACKDROP, np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    body = ((xx - W / 2) / (W * 0.18)) ** 2 + ((yy - H * 0.62) / (H * 0.38)) ** 2 <= 1
    head = ((xx - W / 2) / (W * 0.09)) ** 2 + ((yy - H * 0.25) / (H * 0.13)) ** 2 <= 1
    image[body] = (40, 70, 150)
    image[head] = (200, 150, 120)
    return image


def halves(width: int, height: int, left=RED, right=BLUE) -> bytes:
    picture = np.empty((height, width, 3), np.uint8)
    picture[:, : width // 2], picture[:, width // 2 :] = left, right
    return encode(Image.fromarray(picture), "PNG")


PHOTO = encode(Image.fromarray(studio_photo()), "PNG")


@contextmanager
def own_background_client(tmp_path, **ingress_settings):
    segmenter = SegmenterDeployment(SegmentationConfig())  # the local profile: classic segmentation only
    spy = SdxlSpy()

    def backgrounds(store, store_config, results, queue):
        config = BackgroundGeneratorConfig(model=BackgroundModelConfig(path=str(tmp_path / "no-sdxl")))
        generator = BackgroundGenerator(
            config, store_config, queue, segmenter, None, pipeline=spy, store=store, results=results
        )
        return generator, segmenter

    video_config = VideoModelConfig(path=str(tmp_path / "no-wan"), device="cpu")
    with api_client(
        tmp_path, NoVideo(), video_config, backgrounds=backgrounds, start_video_worker=False, **ingress_settings
    ) as client:
        client.sdxl = spy
        yield client


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-backgrounds")
    with own_background_client(root) as client:
        client.results_dir = root / "results"
        yield client
        assert client.sdxl.calls == 0


def _post(client, background: bytes | None = None, image: bytes = PHOTO, **fields):
    files = {"image": ("studio.png", image, "image/png")}
    if background is not None:
        files["background_image"] = ("mine.png", background, "image/png")
    return client.post("/v1/backgrounds", files=files, data={key: str(value) for key, value in fields.items()})


def _finished(client, response) -> tuple[dict, np.ndarray]:
    assert response.status_code == 202, response.text
    done = wait_for(client, response.json()["id"], final, timeout_s=60)
    assert done["status"] == "succeeded", done
    assert client.sdxl.calls == 0
    png = client.get(done["result"]["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    return done, np.asarray(Image.open(io.BytesIO(png.content)))


def _assert_subject_kept(result: np.ndarray) -> None:
    original = studio_photo()
    assert result.shape[:2] == (H, W)
    assert np.abs(result[150, 160, :3].astype(int) - original[150, 160]).max() <= 2  # body
    assert np.abs(result[60, 160, :3].astype(int) - original[60, 160]).max() <= 2  # head


@pytest.mark.parametrize(("position", "colour"), [("left", RED), ("right", BLUE)])
def test_own_picture_cover_keeps_the_chosen_side(client, position, colour):
    # 960x240 is three frames wide: cover crops a 320-wide window, one half's colour only at either edge
    done, result = _finished(client, _post(client, halves(960, 240), fit="cover", position=position))
    background = done["params"]["background"]
    assert background["source"] == "image" and background["fit"] == "cover" and background["position"] == position
    assert (background["width"], background["height"]) == (960, 240)
    assert not {"prompt", "steps", "guidance_scale", "seed", "scene_id"} & set(done["params"])
    assert done["total_steps"] == 1 and done["step"] == 1
    details = done["result"]["details"]
    assert details["background"] == {"source": "image", "output": "composite", "fit": "cover", "position": position}
    assert details["background_size"] == {"width": 960, "height": 240} and details["mask"]["stage"] == "classic"
    assert result.shape == (H, W, 3)
    _assert_subject_kept(result)
    for y, x in ((5, 5), (5, W - 6), (H - 6, 5), (H - 6, W - 6)):
        assert tuple(result[y, x]) == colour


def test_default_fit_is_cover_centre(client):
    done, result = _finished(client, _post(client, halves(640, 480)))  # 2x the frame, same aspect ratio
    assert done["params"]["background"] == {
        "source": "image",
        "output": "composite",
        "fit": "cover",
        "position": "center",
        "width": 640,
        "height": 480,
    }
    assert tuple(result[5, 5]) == RED and tuple(result[5, W - 6]) == BLUE
    _assert_subject_kept(result)


def test_contain_letterboxes_with_the_colour(client):
    # a 320x60 strip into the 320x240 frame: 60 picture rows at the top, 180 rows of fill
    done, result = _finished(
        client, _post(client, halves(320, 60), fit="contain", position="top", background_color="#1e90ff")
    )
    assert done["params"]["background"]["fill"] == "#1e90ff"
    assert tuple(result[5, 5]) == RED and tuple(result[5, W - 6]) == BLUE
    assert tuple(result[H - 6, 5]) == DODGER and tuple(result[120, 5]) == DODGER
    _assert_subject_kept(result)


def test_stretch_uses_the_whole_picture(client):
    _, result = _finished(client, _post(client, halves(100, 900), fit="stretch"))
    assert tuple(result[H // 2, 5]) == RED and tuple(result[H // 2, W - 6]) == BLUE


def test_plain_colour_background(client):
    done, result = _finished(client, _post(client, background_color="#1E90FF", steps=40, guidance_scale=3))
    # steps/guidance_scale tune SDXL: with a colour they are unused, and left out of the params
    assert done["params"]["background"] == {"source": "color", "output": "composite", "color": "#1e90ff"}
    assert "steps" not in done["params"] and "guidance_scale" not in done["params"]
    assert done["result"]["details"]["background"]["source"] == "color"
    for y, x in ((5, 5), (H - 6, W - 6)):
        assert tuple(result[y, x]) == DODGER
    _assert_subject_kept(result)


def test_cutout_is_an_rgba_png_with_straight_alpha(client):
    done, rgba = _finished(client, _post(client, output="cutout", feather_px=4))
    assert done["params"]["background"] == {"source": "none", "output": "cutout"}
    assert done["result"]["details"]["background"] == {"source": "none", "output": "cutout"}
    assert rgba.shape == (H, W, 4) and rgba.dtype == np.uint8
    alpha = rgba[..., 3]
    assert alpha[150, 160] == 255 and alpha[5, 5] == 0 and tuple(rgba[5, 5, :3]) == (0, 0, 0)
    soft = (alpha > 0) & (alpha < 255)
    assert soft.sum() > 200  # the feathered rim
    _assert_subject_kept(rgba)
    # Straight alpha: laid over a colour with a*RGB + (1 - a)*B (what an editor does with a PNG), the
    # cut-out gives the service's own composite on that colour; premultiplied RGB would come out darker.
    _, composite = _finished(client, _post(client, background_color="#1e90ff", feather_px=4))
    a = alpha[..., None] / 255.0
    over = np.rint(a * rgba[..., :3] + (1 - a) * np.float32(DODGER))
    difference = np.abs(over - composite)
    assert difference.max() <= 3 and difference[soft].mean() < 0.5, (difference.max(), difference[soft].mean())


def test_the_picture_is_stored_with_the_job(client):
    job = _post(client, halves(400, 300), fit="contain").json()
    stored = client.results_dir / f"{job['id']}.background.png"
    with Image.open(stored) as picture:
        assert picture.size == (400, 300) and picture.mode == "RGB"
    wait_for(client, job["id"], final, timeout_s=60)


@pytest.mark.parametrize(
    ("background", "fields", "field"),
    [
        (True, {"scene_id": "white_studio"}, "background_image"),
        (True, {"prompt": "a quiet beach"}, "background_image"),
        (True, {"negative_prompt": "blur"}, "background_image"),
        (False, {"background_color": "#fff", "prompt": "a beach"}, "background_color"),
        (True, {"background_color": "#fff"}, "background_color"),  # cover (the default) has no letterbox
        (True, {"background_color": "#fff", "fit": "stretch"}, "background_color"),
        (False, {"background_color": "white"}, "background_color"),
        (False, {"background_color": "#12345"}, "background_color"),
        (False, {"prompt": "a beach", "fit": "cover"}, "fit"),
        (False, {"background_color": "#000", "position": "top"}, "position"),
        (True, {"fit": "zoom"}, "fit"),
        (True, {"position": "middle"}, "position"),
        (True, {"fit": ""}, "fit"),
        (False, {"output": "mask"}, "output"),
        (False, {"output": "cutout", "prompt": "a beach"}, "prompt"),
        (True, {"output": "cutout"}, "background_image"),
        (False, {"output": "cutout", "background_color": "#000"}, "background_color"),
        (False, {}, "prompt"),
    ],
)
def test_conflicts_and_bad_values_are_400s_naming_the_field(client, background, fields, field):
    response = _post(client, halves(64, 64) if background else None, **fields)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_input" and error["field"] == field, error
    assert f"`{field}`" in error["message"] or field in ("fit", "position", "output"), error


@pytest.mark.parametrize("data", [b"GIF89a-not-really", b"", b"\x89PNG\r\n\x1a\n truncated"])
def test_an_undecodable_background_image_is_a_400_naming_it(client, data):
    response = _post(client, data, fit="cover")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == "background_image" and "`background_image`" in error["message"], error


def test_a_background_image_sent_as_text_is_refused(client):
    response = client.post(
        "/v1/backgrounds", files={"image": ("s.png", PHOTO, "image/png")}, data={"background_image": "beach.jpg"}
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "background_image"


def test_an_oversized_background_image_is_a_413_naming_it(tmp_path):
    # 0.1 megapixels: the photo (77k pixels) fits, a 400x400 background (160k) does not
    with own_background_client(tmp_path, max_image_megapixels=0.1) as client:
        response = _post(client, halves(400, 400))
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["field"] == "background_image" and "`background_image`" in error["message"]
        assert "megapixels" in error["message"]


def test_two_full_size_pictures_fit_in_one_request(tmp_path):
    # Each file has the upload limit to itself: with a 1 MB limit, two 0.9 MB files are accepted together.
    noise = np.random.default_rng(0).integers(0, 256, (560, 560, 3), np.uint8)
    big = encode(Image.fromarray(noise), "PNG")
    assert 0.85e6 < len(big) < 1e6
    with own_background_client(tmp_path, max_upload_mb=1) as client:
        response = _post(client, big, image=big, fit="contain")
        assert response.status_code == 202, response.text


def test_the_document_shows_the_new_fields(client):
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/backgrounds"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    while "$ref" in body:
        body = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    fields = body["properties"]
    assert fields["background_image"]["format"] == "binary"
    assert fields["background_color"]["pattern"] == "^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"
    assert fields["fit"]["enum"] == ["cover", "contain", "stretch"] and "default" not in fields["fit"]
    assert fields["position"]["enum"] == ["center", "top", "bottom", "left", "right"]
    assert fields["output"]["enum"] == ["composite", "cutout"] and fields["output"]["default"] == "composite"
    assert body["required"] == ["image"]
