"""Background replacement through the HTTP app: mask preview, jobs, scenes, bad input (no Ray)."""

import io

import numpy as np
import pytest
from PIL import Image

from deployments.background_generator import BackgroundGenerator
from deployments.config import BackgroundGeneratorConfig
from deployments.segmenter import SegmenterDeployment
from pipelines.background.sdxl import BackgroundModelConfig, SdxlBackground, background_size
from pipelines.background.segmentation.chain import SegmentationConfig
from tests.api_harness import api_client, final, wait_for
from tests.images import encode

pytestmark = pytest.mark.slow


def studio_photo(width: int = 320, height: int = 240) -> bytes:
    """A subject on a plain studio backdrop: what the classic fallback must get right."""
    image = np.full((height, width, 3), (236, 236, 240), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    body = ((xx - width / 2) / (width * 0.18)) ** 2 + ((yy - height * 0.62) / (height * 0.38)) ** 2 <= 1
    head = ((xx - width / 2) / (width * 0.09)) ** 2 + ((yy - height * 0.25) / (height * 0.13)) ** 2 <= 1
    image[body] = (40, 70, 150)
    image[head] = (200, 150, 120)
    return encode(Image.fromarray(image), "PNG")


@pytest.fixture(scope="module")
def sdxl(tiny_models_dir):
    from pipelines.tiny.provision import provision_tiny_models

    config = BackgroundModelConfig(
        path=str(tiny_models_dir / "tiny-sdxl"), tiny_model="tiny-sdxl", device="cpu", dtype="float32"
    )
    provision_tiny_models(config)
    return SdxlBackground.from_config(config)


@pytest.fixture
def client(tmp_path, wan_pipeline, video_model_config, sdxl, tiny_models_dir):
    segmenter = SegmenterDeployment(SegmentationConfig())  # the local profile: classic method only

    def backgrounds(store, store_config, results, queue):
        config = BackgroundGeneratorConfig(model=BackgroundModelConfig(path=str(tiny_models_dir / "tiny-sdxl")))
        generator = BackgroundGenerator(
            config, store_config, queue, segmenter, None, pipeline=sdxl, store=store, results=results
        )
        return generator, segmenter

    with api_client(tmp_path, wan_pipeline, video_model_config, backgrounds=backgrounds) as client:
        yield client


def _post(client, path, image=None, **fields):
    files = {"image": ("studio.png", image if image is not None else studio_photo(), "image/png")}
    return client.post(path, files=files, data={key: str(value) for key, value in fields.items()})


def test_mask_preview_is_a_png_of_the_input_size(client):
    response = _post(client, "/v1/backgrounds/mask", composition="center", feather_px=4)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    mask = np.asarray(Image.open(io.BytesIO(response.content)))
    assert mask.shape == (240, 320)
    assert response.headers["x-mask-stage"] == "classic" and response.headers["x-mask-status"] == "ok"
    # the subject (centre) is kept, the backdrop corner is replaced
    assert mask[150, 160] > 200 and mask[5, 5] < 30


def test_left_composition_keeps_only_the_left_half(client):
    mask = np.asarray(Image.open(io.BytesIO(_post(client, "/v1/backgrounds/mask", composition="left").content)))
    assert mask[:, 200:].max() < 30


def test_background_job_end_to_end_with_a_scene(client):
    response = _post(client, "/v1/backgrounds", scene_id="white_studio", steps=4, seed=3)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "background" and job["params"]["scene_id"] == "white_studio"
    assert job["params"]["guidance_scale"] == pytest.approx(6.5, abs=1.5)
    done = wait_for(client, job["id"], final)
    assert done["status"] == "succeeded", done
    assert done["step"] == done["total_steps"] == 4
    details = done["result"]["details"]
    assert details["mask"]["stage"] == "classic" and details["mask"]["status"] == "ok"
    assert details["background"] == job["params"]["background"] == {"source": "scene", "output": "composite"}
    expected = background_size(320, 240)
    assert details["background_size"] == {"width": expected[0], "height": expected[1]}
    png = client.get(done["result"]["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    result = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"))
    original = np.asarray(Image.open(io.BytesIO(studio_photo())).convert("RGB"))
    assert result.shape == original.shape
    # the subject's core is the original's pixels; the backdrop was replaced
    assert np.abs(result[150, 160].astype(int) - original[150, 160]).max() <= 2
    assert np.abs(result[5:40, 5:40].astype(int) - original[5:40, 5:40]).mean() > 5


def test_a_prompt_background_records_its_source(client):
    job = _post(client, "/v1/backgrounds", prompt="a quiet beach", steps=4, seed=5).json()
    assert job["params"]["background"] == {"source": "prompt", "output": "composite"}
    done = wait_for(client, job["id"], final)
    assert done["status"] == "succeeded" and done["result"]["details"]["background"]["source"] == "prompt"
    assert done["total_steps"] == 4


def test_same_seed_same_background(client):
    first = wait_for(
        client, _post(client, "/v1/backgrounds", prompt="a quiet beach", steps=4, seed=11).json()["id"], final
    )
    second = wait_for(
        client, _post(client, "/v1/backgrounds", prompt="a quiet beach", steps=4, seed=11).json()["id"], final
    )
    assert client.get(first["result"]["url"]).content == client.get(second["result"]["url"]).content


def test_cancel_a_background_job(client):
    job = _post(client, "/v1/backgrounds", prompt="a forest", steps=50, seed=1).json()
    wait_for(client, job["id"], lambda j: j["status"] == "running" and j["step"] >= 1)
    client.post(f"/v1/jobs/{job['id']}/cancel")
    done = wait_for(client, job["id"], final)
    assert done["status"] == "cancelled" and done["step"] < 50


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({}, 400, "prompt"),
        ({"scene_id": "moon_base"}, 400, "scene_id"),
        ({"prompt": "a park", "composition": "top"}, 400, "composition"),
        ({"prompt": "a park", "focus": "face"}, 400, "focus"),
        ({"prompt": "a park", "feather_px": "25"}, 400, "feather_px"),
        ({"prompt": "a park", "steps": "2"}, 400, "steps"),
        ({"prompt": "a park", "guidance_scale": "x"}, 400, "guidance_scale"),
        ({"prompt": "a park", "mood": "happy"}, 400, "mood"),
    ],
)
def test_bad_background_requests_name_the_field(client, fields, status, field):
    response = _post(client, "/v1/backgrounds", **fields)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_bad_images_are_refused_for_backgrounds_and_masks(client):
    for path, fields in (("/v1/backgrounds", {"prompt": "a park"}), ("/v1/backgrounds/mask", {})):
        response = _post(client, path, image=b"GIF89a-not-really", **fields)
        assert response.status_code == 400 and response.json()["error"]["field"] == "image"


def test_a_mask_that_keeps_nothing_is_reported_and_not_composited(client):
    # subject on the right, composition=left keeps only the (empty) left half
    image = np.full((240, 320, 3), (236, 236, 240), np.uint8)
    image[60:220, 230:300] = (40, 70, 150)
    photo = encode(Image.fromarray(image), "PNG")
    preview = _post(client, "/v1/backgrounds/mask", image=photo, composition="left")
    assert preview.status_code == 200 and preview.headers["x-mask-status"] == "empty"
    job = _post(client, "/v1/backgrounds", image=photo, prompt="a calm lake", composition="left", steps=4).json()
    done = wait_for(client, job["id"], final)
    assert done["status"] == "failed" and done["error"]["type"] == "mask_unusable"
    assert "empty" in done["error"]["message"] and done["result"] is None


def test_which_stage_each_test_image_ended_on(client):
    flat = encode(Image.new("RGB", (200, 150), (128, 128, 128)), "PNG")
    stages = {
        "studio": _post(client, "/v1/backgrounds/mask", image=studio_photo()).headers["x-mask-stage"],
        "flat grey": _post(client, "/v1/backgrounds/mask", image=flat).headers["x-mask-stage"],
    }
    print(f"segmentation stage per test image: {stages}")
    assert stages == {"studio": "classic", "flat grey": "ellipse"}
