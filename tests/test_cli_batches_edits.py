"""``vividflow batch``, ``batches``, ``edit``, ``loras`` and the new ``video``/``plan`` options, through
Typer's CliRunner against the real ingress (the quiet app of tests.test_client_batches_edits: no worker runs,
so submissions are real and nothing renders; the renders use the tiny pipelines and are marked slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import test_client_batches_edits as shared
from tests.api_harness import api_client
from tests.test_cli import Cli
from tests.test_client import PHOTO, InProcessTransport, decode_mp4

lora_model = shared.lora_model
quiet_app = shared.quiet_app


@pytest.fixture
def cli(quiet_app) -> Cli:
    return Cli(InProcessTransport(quiet_app))


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(PHOTO)
    return path


@pytest.fixture
def side(tmp_path) -> Path:
    path = tmp_path / "side.png"
    path.write_bytes(shared.SIDE)
    return path


@pytest.fixture
def clip(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(shared.CLIP)
    return path


def submitted_body(cli: Cli, path: str) -> bytes:
    return next(r for r in cli.transport.requests if r.url.path == path).read()


def test_video_sends_views_last_image_storyboard_lora_and_webhook(cli, photo, side, tmp_path):
    board = tmp_path / "board.json"
    board.write_text(json.dumps([{"prompt": "pan left"}, {"prompt": "pan right"}]))
    result = cli("video", photo, "--image2", side, "--images", photo, "--transition", "1", "--storyboard", board,
                 "--lora", "tiny-orbit", "--lora-strength", "0.5", "--webhook-url", "https://public.example.net/hook",
                 "--no-wait", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)["job"]["params"]
    assert params["views"] == 3 and params["transition_s"] == 1.0 and params["duration_s"] == 2.0
    assert [entry["prompt"] for entry in params["storyboard"]] == ["pan left", "pan right"]
    assert params["lora"] == "tiny-orbit" and params["lora_strength"] == 0.5
    body = submitted_body(cli, "/v1/videos")
    assert body.count(b'name="images"; filename=') == 3 and b'name="image";' not in body
    assert b'name="webhook_url"\r\n\r\nhttps://public.example.net/hook' in body
    private = cli("video", photo, "--webhook-url", "http://localhost/hook")  # refused by the server's host check
    assert private.exit_code == 2 and "webhook_url" in private.stderr

    last = cli("video", photo, "--last-image", side, "-d", "1", "--no-wait", "--json")
    assert last.exit_code == 0 and json.loads(last.stdout)["job"]["params"]["last_image"] is True


def test_plan_shows_segments_and_views(cli, photo, side):
    long = cli("plan", photo, "-d", "12")
    assert long.exit_code == 0, long.output
    assert "193 frames at 16 fps (12 s), 3 segments" in long.stdout
    views = cli("plan", photo, "--images", side, "--json")
    assert views.exit_code == 0 and len(json.loads(views.stdout)["views"]) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--transition", "6"],
        ["--lora-strength", "2.5"],
        ["--storyboard", "[{"],
        ["--storyboard", "no-such-file.json"],
        ["--storyboard", '[{"duration_s": 1}]'],
        ["--images", "missing.png"],
    ],
    ids=["transition", "lora-strength", "bad-json", "no-file", "no-prompt", "missing-view"],
)
def test_bad_video_options_exit_2_before_any_request(cli, photo, args):
    result = cli("video", photo, *args)
    assert result.exit_code == 2, result.output
    assert cli.factory_calls == [] and cli.transport.requests == []


def test_a_duration_beyond_the_deployments_maximum_is_the_servers_400(cli, photo):
    result = cli("video", photo, "-d", "45")  # within the document's 60, beyond this service's 30
    assert result.exit_code == 2 and "duration_s" in result.stderr and cli.transport.requests


def test_batch_no_wait_then_batches_show_and_cancel(cli, photo):
    queued = cli("batch", photo, "--variations", "3", "--seed", "7", "-d", "0.5", "--no-wait", "--json")
    assert queued.exit_code == 0, queued.output
    batch = json.loads(queued.stdout)["batch"]
    assert [job["params"]["seed"] for job in batch["jobs"]] == [7, 8, 9]
    shown = cli("batches", "show", batch["id"])
    assert shown.exit_code == 0 and f"batch {batch['id']}: queued" in shown.stdout and "seed 8" in shown.stdout
    cancelled = cli("batches", "cancel", batch["id"], "--json")
    assert cancelled.exit_code == 0 and json.loads(cancelled.stdout)["counts"]["cancelled"] == 3
    assert cli("batches", "show", "0" * 32).exit_code == 1


def test_batch_seeds_and_prompts(cli, photo):
    result = cli("batch", photo, "--seeds", "4,40", "--prompts", '["a wave", "a bow"]', "--no-wait", "--json")
    assert result.exit_code == 0, result.output
    jobs = json.loads(result.stdout)["batch"]["jobs"]
    assert [(job["params"]["seed"], job["params"]["user_prompt"]) for job in jobs] == [(4, "a wave"), (40, "a bow")]
    mismatch = cli("batch", photo, "--variations", "3", "--seeds", "1,2")
    assert mismatch.exit_code == 2 and "seeds" in mismatch.stderr  # the server's 400, naming the field


@pytest.mark.parametrize(
    "args",
    [["--variations", "9"], ["--variations", "0"], ["--seeds", "1,x"], ["--seeds", "-1"], ["--prompts", '[""]']],
    ids=["too-many", "none", "not-a-number", "negative", "empty-prompt"],
)
def test_bad_batch_options_exit_2_before_any_request(cli, photo, args):
    result = cli("batch", photo, *args)
    assert result.exit_code == 2, result.output
    assert cli.factory_calls == []


def test_edit_submits_and_plans(cli, clip, side):
    queued = cli("edit", clip, "-p", "van gogh style", "--mode", "style", "--strength", "0.5", "--no-audio",
                 "--seed", "3", "--no-wait", "--json")  # fmt: skip
    assert queued.exit_code == 0, queued.output
    job = json.loads(queued.stdout)["job"]
    assert job["kind"] == "edit" and (job["params"]["strength"], job["params"]["keep_audio"]) == (0.5, False)
    replace = cli("edit", clip, "-p", "a red ball", "--mode", "replace", "--reference-image", side, "--no-wait")
    assert replace.exit_code == 0 and "queued edit job" in replace.stdout
    plan = cli("edit", clip, "-p", "x", "--mode", "style", "--plan")
    assert plan.exit_code == 0 and "96×64 2 s at 16 fps → 832×560, 29 frames at 16 fps" in plan.stdout
    wrong = cli("edit", clip, "-p", "a cat", "--mode", "style", "--reference-image", side)
    assert wrong.exit_code == 2 and "reference_image" in wrong.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-p", "a cat"],
        ["--mode", "style"],
        ["-p", "a cat", "--mode", "cartoon"],
        ["-p", "a", "--mode", "style", "--steps", "41"],
        ["-p", "a", "--mode", "style", "--control", "depth"],
    ],  # fmt: skip
    ids=["no-mode", "no-prompt", "unknown-mode", "steps", "control"],
)
def test_bad_edit_options_exit_2_before_any_request(cli, clip, args):
    result = cli("edit", clip, *args)
    assert result.exit_code == 2, result.output
    assert cli.factory_calls == []


def test_loras(cli):
    table = cli("loras")
    assert table.exit_code == 0, table.output
    assert "tiny-orbit" in table.stdout and "1/0.75" in table.stdout and "ready" in table.stdout
    reloaded = cli("loras", "--reload", "--json")
    assert reloaded.exit_code == 0 and len(json.loads(reloaded.stdout)["loras"]) == 2


@pytest.mark.slow  # two tiny renders, ~13 s on a CPU
def test_batch_renders_and_saves_each_video(tmp_path, wan_pipeline, video_model_config, photo):
    with api_client(tmp_path, wan_pipeline, video_model_config) as app:
        cli = Cli(InProcessTransport(app))
        result = cli("batch", photo, "-N", "2", "--seed", "3", "-d", "0.5", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert [decode_mp4((tmp_path / f"photo_{n}.mp4").read_bytes())["frames"] for n in (1, 2)] == [9, 9]
    assert "seed 3" in result.stdout and "seed 4" in result.stdout
    assert "#2" in result.stderr and "4/4" in result.stderr and "2 succeeded" in result.stderr


@pytest.mark.slow  # the tiny VACE editor (built on first use) renders at 832×560
def test_edit_renders_with_progress(tmp_path, tiny_models_dir, monkeypatch):
    from pipelines.edit.config import EditModelConfig
    from pipelines.edit.wan_vace import WanVaceEditor
    from pipelines.tiny.provision import provision_tiny_models
    from pipelines.tiny.wan_vace import TINY_WAN_VACE
    from pipelines.video.config import VideoModelConfig
    from tests.edit_videos import video_bytes

    config = EditModelConfig(path=str(tiny_models_dir / TINY_WAN_VACE), tiny_model=TINY_WAN_VACE, device="cpu",
                             dtype="float32")  # fmt: skip
    provision_tiny_models(config)
    editor = WanVaceEditor.from_config(config)

    def make(store, store_config, results, queue):
        from deployments.config import VideoEditorConfig
        from deployments.segmenter import SegmenterDeployment
        from deployments.video_editor import VideoEditor
        from pipelines.background.segmentation.chain import SegmentationConfig

        segmenter = SegmenterDeployment(SegmentationConfig())
        return VideoEditor(VideoEditorConfig(model=config), store_config, queue, segmenter, pipeline=editor,
                           store=store, results=results)  # fmt: skip

    monkeypatch.chdir(tmp_path)  # the default output is <video name>_edit.mp4 in the current folder
    source = tmp_path / "source.mp4"
    source.write_bytes(video_bytes(width=96, height=64, frames=6, fps=16))
    with api_client(tmp_path, shared.NoRender(), VideoModelConfig(path=str(tmp_path / "no-wan")), editor=make,
                    start_video_worker=False) as app:  # fmt: skip
        cli = Cli(InProcessTransport(app))
        result = cli("edit", source, "-p", "a car, van gogh style", "--mode", "style", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "4/4" in result.stderr and "saved" in result.stdout and "seed 3" in result.stdout
    assert decode_mp4((tmp_path / "source_edit.mp4").read_bytes())["frames"] == 5
