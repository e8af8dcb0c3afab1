"""Your own background from the command line and the Python client (in process, SDXL a spy that never runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import Cli
from tests.test_client import BASE, InProcessTransport
from tests.test_own_background_api import BLUE, DODGER, PHOTO, RED, H, W, halves, own_background_client
from vividflow.client import Client


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with own_background_client(tmp_path_factory.mktemp("own-cli")) as client:
        yield client
        assert client.sdxl.calls == 0


@pytest.fixture
def files(tmp_path):
    photo, background = tmp_path / "studio.png", tmp_path / "beach.png"
    photo.write_bytes(PHOTO)
    background.write_bytes(halves(320, 60))
    return photo, background


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_cli_background_image_contain_with_a_letterbox_colour(app, files, tmp_path):
    photo, background = files
    cli = Cli(InProcessTransport(app))
    out = tmp_path / "new.png"
    args = ("--background-image", background, "--fit", "contain", "--position", "top", "--background-color", "#1e90ff")
    result = cli("background", photo, *args, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)["job"]
    assert job["params"]["background"]["source"] == "image" and job["params"]["background"]["fill"] == "#1e90ff"
    picture = _pixels(out)
    assert picture.shape == (H, W, 3)
    assert tuple(picture[5, 5]) == RED and tuple(picture[5, W - 6]) == BLUE and tuple(picture[H - 6, 5]) == DODGER
    submit = next(r for r in cli.transport.requests if r.url.path == "/v1/backgrounds")
    body = submit.read()
    assert b'name="background_image"; filename="beach.png"' in body and b'name="fit"\r\n\r\ncontain' in body
    assert b'name="output"' not in body and b'name="steps"' not in body  # unset options are not sent


def test_cli_cutout_saves_an_rgba_png_next_to_the_photo(app, files, tmp_path, monkeypatch):
    photo, _ = files
    monkeypatch.chdir(tmp_path)
    result = Cli(InProcessTransport(app))("background", photo, "--cutout")
    assert result.exit_code == 0, result.output
    rgba = _pixels(tmp_path / "studio_cutout.png")
    assert rgba.shape == (H, W, 4) and rgba[5, 5, 3] == 0 and rgba[150, 160, 3] == 255


def test_cli_conflicts_are_the_servers_400_and_exit_2(app, files):
    photo, background = files
    cli = Cli(InProcessTransport(app))
    result = cli("background", photo, "--scene", "white_studio", "--background-image", background)
    assert result.exit_code == 2 and "background_image" in result.stderr
    nothing = cli("background", photo)
    assert nothing.exit_code == 2 and "--background-image" in nothing.output
    bad_fit = cli("background", photo, "--background-image", background, "--fit", "zoom")
    assert bad_fit.exit_code == 2  # refused by the CLI itself, before any request
    assert [r.url.path for r in cli.transport.requests] == ["/v1/backgrounds"]


def test_client_sends_the_background_as_a_file(app):
    with Client(BASE, transport=InProcessTransport(app)) as client:
        job = client.submit_background(PHOTO, background_image=halves(100, 900), fit="stretch")
        assert job.params["background"] == {
            "source": "image",
            "output": "composite",
            "fit": "stretch",
            "position": "center",
            "width": 100,
            "height": 900,
        }
        done = client.wait(job, timeout_s=60)
        assert done.status == "succeeded"
        colour = client.submit_background(PHOTO, background_color="#000")
        assert colour.params["background"] == {"source": "color", "output": "composite", "color": "#000000"}
