"""The ``vividflow`` command line through Typer's CliRunner, against the real ingress (no Ray).

Every command gets its client from the factory passed as ``obj`` (the CLI's seam for this); here the
factory points the client at the in-process app through ``InProcessTransport`` and records each call,
so "refused before any request" is checked by the factory never having been asked for a client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import get_args

import httpx
import pytest
from typer.testing import CliRunner, Result

from tests import test_client as shared
from tests.api_harness import api_client, final, wait_for
from tests.test_client import FAST, PHOTO, BrokenPipeline, InProcessTransport, decode_mp4, image_size, studio_photo
from vividflow.cli import app
from vividflow.client import Client, Job, RetryPolicy
from vividflow.client import options as limits

# The in-process apps of the client tests, shared as fixtures (pytest finds fixtures among module globals).
app_client = shared.app_client
background_app = shared.background_app
sdxl = shared.sdxl


@dataclass
class Cli:
    """Runs the CLI with a client factory; ``factory_calls`` records (url, api key) per client made."""

    transport: httpx.BaseTransport
    client_class: type[Client] = Client
    factory_calls: list[tuple[str | None, str | None]] = field(default_factory=list)
    retry: RetryPolicy = FAST

    def factory(self, url: str | None, api_key: str | None) -> Client:
        self.factory_calls.append((url, api_key))
        return self.client_class(
            url or "http://vividflow.test", api_key=api_key, transport=self.transport, retry=self.retry
        )

    def __call__(self, *args: str | Path, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner(env={"COLUMNS": "200", **(env or {})})
        return runner.invoke(app, [str(arg) for arg in args], obj=self.factory)


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(PHOTO)
    return path


@pytest.fixture
def cli(app_client) -> Cli:
    return Cli(InProcessTransport(app_client))


def test_video_renders_and_writes_the_mp4(cli, photo, tmp_path):
    out = tmp_path / "out.mp4"
    result = cli("video", photo, "-d", "0.5", "-p", "slow zoom", "--seed", "5", "-o", out)
    assert result.exit_code == 0, result.output
    assert decode_mp4(out.read_bytes())["frames"] == 9
    assert "saved" in result.stdout and "seed 5" in result.stdout and "9 frames at 16 fps" in result.stdout
    assert "4/4" in result.stderr  # the progress bar's last state: step 4 of 4
    submit = next(r for r in cli.transport.requests if r.url.path == "/v1/videos")
    body = submit.read()
    assert b'name="duration_s"\r\n\r\n0.5' in body and b'name="steps"' not in body  # unset options are not sent


def test_video_defaults_to_the_photo_name(cli, photo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("video", photo, "-d", "0.5")
    assert result.exit_code == 0, result.output
    assert decode_mp4((tmp_path / "photo.mp4").read_bytes())["frames"] == 9


def test_json_output_is_one_parseable_document(cli, photo, tmp_path):
    out = tmp_path / "out.mp4"
    result = cli("video", photo, "-d", "0.5", "--json", "-o", out)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["output"] == str(out) and out.exists()
    assert document["job"]["status"] == "succeeded" and document["job"]["params"]["frames"] == 9
    assert "steps" not in result.stderr  # no progress bar

    plan = json.loads(cli("plan", photo, "-d", "3", "--json").stdout)
    assert plan["output"] == {"width": 832, "height": 624} and plan["frames"] == 49


@pytest.mark.parametrize(
    "args",
    [
        ["-d", "61"],
        ["-d", "0.1"],
        ["--steps", "13"],
        ["--guidance", "0.5"],
        ["--seed", "-1"],
        ["--seed", str(2**63)],
        ["-p", "x" * 2001],
        ["--frames", "9"],
    ],
    ids=["long", "short", "steps", "guidance", "negative-seed", "huge-seed", "long-prompt", "unknown-option"],
)
def test_bad_values_exit_2_before_any_request(cli, photo, args):
    result = cli("video", photo, *args)
    assert result.exit_code == 2, result.output
    assert cli.factory_calls == [] and cli.transport.requests == []


def test_missing_files_and_folders_exit_2_before_any_request(cli, photo, tmp_path):
    missing = cli("video", tmp_path / "nope.jpg")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    no_folder = cli("video", photo, "-o", tmp_path / "no" / "such" / "out.mp4")
    assert no_folder.exit_code == 2 and "does not exist" in no_folder.output
    no_scene = cli("background", photo)
    assert no_scene.exit_code == 2 and "--scene" in no_scene.output
    bad_choice = cli("mask", photo, "--composition", "diagonal")
    assert bad_choice.exit_code == 2
    assert cli.factory_calls == [] and cli.transport.requests == []


def test_a_400_from_the_server_exits_2_with_its_message(cli, photo):
    result = cli("video", photo, "-t", "no_such.template")
    assert result.exit_code == 2
    assert "invalid_input" in result.stderr and "template_id" in result.stderr and "no_such.template" in result.stderr
    as_json = cli("video", photo, "-t", "no_such.template", "--json")
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"]["field"] == "template_id"


def test_a_failed_job_exits_1(tmp_path, video_model_config, photo):
    with api_client(tmp_path, BrokenPipeline(), video_model_config) as broken:
        cli = Cli(InProcessTransport(broken))
        result = cli("video", photo, "-d", "0.5", "-o", tmp_path / "out.mp4")
        as_json = cli("video", photo, "-d", "0.5", "--json", "-o", tmp_path / "out.mp4")
    assert result.exit_code == 1, result.output
    assert "failed" in result.stderr and "unsupported_hardware" in result.stderr
    assert "compute capability" in result.stderr
    assert not (tmp_path / "out.mp4").exists()
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["job"]["error"]["type"] == "unsupported_hardware"


class InterruptedClient(Client):
    """Presses Ctrl-C (raises KeyboardInterrupt) once the job is running, as a user at the terminal would."""

    def wait(self, job, *, on_progress=None, **kwargs) -> Job:
        def interrupt(state: Job) -> None:
            if on_progress is not None:
                on_progress(state)
            if state.status == "running":
                raise KeyboardInterrupt

        return super().wait(job, on_progress=interrupt, **kwargs)


def test_ctrl_c_cancels_the_job_and_exits_130(app_client, photo, tmp_path):
    cli = Cli(InProcessTransport(app_client), client_class=InterruptedClient)
    result = cli("video", photo, "-d", "0.5", "--steps", "12", "-o", tmp_path / "out.mp4")
    assert result.exit_code == 130, result.output
    cancels = [r.url.path for r in cli.transport.requests if r.url.path.endswith("/cancel")]
    assert len(cancels) == 1
    job_id = cancels[0].split("/")[3]
    assert "cancelling job" in result.stderr and job_id in result.stderr
    done = wait_for(app_client, job_id, final)
    assert done["status"] == "cancelled" and done["step"] < 12
    assert not (tmp_path / "out.mp4").exists()


def test_plan_prints_the_output_size(cli, photo):
    result = cli("plan", photo, "-d", "0.5")
    assert result.exit_code == 0, result.output
    assert "640×480 → 832×624, 9 frames at 16 fps (0.5 s)" in result.stdout


def test_jobs_show_and_cancel(cli, photo):
    queued = cli("video", photo, "-d", "0.5", "--steps", "12", "--no-wait", "--json")
    assert queued.exit_code == 0, queued.output
    job_id = json.loads(queued.stdout)["job"]["id"]
    shown = cli("jobs", "show", job_id, "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["id"] == job_id
    human = cli("jobs", "show", job_id)
    assert human.exit_code == 0 and "params.seed" in human.stdout and "video" in human.stdout
    cancelled = cli("jobs", "cancel", job_id)
    assert cancelled.exit_code == 0 and job_id in cancelled.stdout
    assert wait_for(cli.transport.app_client, job_id, final)["status"] == "cancelled"
    unknown = cli("jobs", "show", "0123")
    assert unknown.exit_code == 1 and "job_not_found" in unknown.stderr


def test_templates(cli):
    scenes = cli("templates", "scenes", "--json")
    assert scenes.exit_code == 0 and len(json.loads(scenes.stdout)["templates"]) == 24
    motion = cli("templates", "motion")
    assert motion.exit_code == 0 and "portrait_subtle.soft_smile" in motion.stdout


def test_background_and_mask(background_app, tmp_path):
    cli = Cli(InProcessTransport(background_app))
    studio = tmp_path / "studio.png"
    studio.write_bytes(studio_photo())
    out = tmp_path / "out.png"
    result = cli("background", studio, "--scene", "white_studio", "--steps", "4", "--feather", "2", "-o", out)
    assert result.exit_code == 0, result.output
    assert image_size(out) == (320, 240)
    mask = cli("mask", studio, "--composition", "left", "-o", tmp_path / "mask.png", "--json")
    assert mask.exit_code == 0, mask.output
    document = json.loads(mask.stdout)
    assert document["stage"] == "classic" and image_size(document["output"]) == (320, 240)
    bad_scene = cli("background", studio, "--scene", "moon_base")
    assert bad_scene.exit_code == 2 and "scene_id" in bad_scene.stderr


def test_url_and_api_key_come_from_flags_or_the_environment(cli):
    assert cli("--url", "http://flag:1", "--api-key", "k1", "templates", "scenes").exit_code == 0
    env = {"VIVIDFLOW_URL": "http://env:2", "VIVIDFLOW_API_KEY": "k2"}
    assert cli("templates", "scenes", env=env).exit_code == 0
    assert cli.factory_calls == [("http://flag:1", "k1"), ("http://env:2", "k2")]
    assert [r.headers.get("Authorization") for r in cli.transport.requests] == ["Bearer k1", "Bearer k2"]


def test_an_unreachable_service_exits_1():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    cli = Cli(httpx.MockTransport(refuse), retry=RetryPolicy(max_attempts=2, backoff_initial_s=0.001))
    result = cli("templates", "motion")
    assert result.exit_code == 1
    assert "retrying" in result.stderr and "Connection refused" in result.stderr and "VIVIDFLOW_URL" in result.stderr


def test_the_cli_bounds_are_the_apis(app_client):
    """The CLI refuses out-of-range values itself; its bounds must be the ones the served document states."""
    schemas = app_client.get("/openapi.json").json()["components"]["schemas"]
    video, background = schemas["VideoForm"]["properties"], schemas["BackgroundForm"]["properties"]
    batch, edit = schemas["BatchForm"]["properties"], schemas["EditForm"]["properties"]

    def bounds(prop: dict) -> tuple[float, float]:
        return prop["minimum"], prop["maximum"]

    assert bounds(video["duration_s"]) == limits.VIDEO_DURATION_S  # the document's; a deployment may allow less
    assert bounds(video["steps"]) == limits.VIDEO_STEPS
    assert bounds(video["guidance_scale"]) == bounds(video["guidance_scale_2"]) == limits.VIDEO_GUIDANCE
    assert bounds(video["transition_s"]) == limits.TRANSITION_S
    assert bounds(video["lora_strength"]) == limits.LORA_STRENGTH
    # the document writes 2**63 - 1 as a float (9.223372036854776e18), so compare at that precision
    assert (
        video["seed"]["maximum"] == float(limits.MAX_SEED) and video["prompt"]["maxLength"] == limits.MAX_PROMPT_CHARS
    )
    assert video["images"]["type"] == "array" and video["images"]["items"]["format"] == "binary"
    assert bounds(batch["variations"]) == limits.VARIATIONS
    assert bounds(edit["steps"]) == limits.EDIT_STEPS
    assert bounds(edit["strength"]) == limits.EDIT_STRENGTH
    assert bounds(edit["guidance_scale"]) == limits.EDIT_GUIDANCE
    assert bounds(background["steps"]) == limits.BACKGROUND_STEPS
    assert bounds(background["guidance_scale"]) == limits.BACKGROUND_GUIDANCE
    assert bounds(background["feather_px"]) == limits.FEATHER_PX
    assert background["composition"]["enum"] == ["center", "left", "right", "full"]
    assert background["focus"]["enum"] == ["person", "scene"]
    assert edit["mode"]["enum"] == list(get_args(limits.EditMode))
    assert edit["control"]["enum"] == list(get_args(limits.Control))
    # and every option the client can send is a field the API declares, and the other way round
    assert set(limits.VideoOptions.__optional_keys__) == set(video) - {"image"}
    assert set(limits.BatchOptions.__optional_keys__) == set(batch) - {"image"}
    assert set(limits.BackgroundOptions.__optional_keys__) == set(background) - {"image"}
    assert set(limits.EditOptions.__optional_keys__) | {"prompt", "mode"} == set(edit) - {"video"}


def test_the_console_script_is_installed():
    (script,) = entry_points(group="console_scripts", name="vividflow")
    assert script.value == "vividflow.cli:app"


def test_jobs_list_and_delete(cli, photo, tmp_path):
    submitted = cli("video", photo, "-d", "0.5", "--no-wait", "--json")
    assert submitted.exit_code == 0, submitted.output
    job_id = json.loads(submitted.stdout)["job"]["id"]
    listed = cli("jobs", "list", "--json")
    assert listed.exit_code == 0 and [job["id"] for job in json.loads(listed.stdout)] == [job_id]
    table = cli("jobs", "list", "--all")
    assert job_id in table.stdout
    deleted = cli("jobs", "delete", job_id)
    assert deleted.exit_code == 0 and "deleted" in deleted.stdout
    assert cli("jobs", "show", job_id).exit_code == 1
    assert json.loads(cli("jobs", "list", "--json").stdout) == []
