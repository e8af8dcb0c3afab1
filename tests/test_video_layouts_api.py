"""The HTTP side of first/last frame, multi-view, long videos, storyboards and batches (model stand-in)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deployments.video_generator import VideoGenerator
from pipelines.common.media import probe_video
from pipelines.video.config import VideoModelConfig
from tests.api_harness import api_client, final, wait_for
from tests.images import encode, gradient_image
from tests.video_stand_in import StandInVideoModel

PHOTO = encode(gradient_image(64, 48))
PORTRAIT = encode(gradient_image(48, 64, seed=1))
SQUARE = encode(gradient_image(60, 60, seed=2))
CONFIG = VideoModelConfig(path="unused-by-the-stand-in", device="cpu", dtype="float32")


@pytest.fixture
def model():
    return StandInVideoModel()


@pytest.fixture
def client(tmp_path, model):
    with api_client(tmp_path, model, CONFIG) as client:
        yield client


def _files(**named):
    files = []
    for name, value in named.items():
        for item in value if isinstance(value, list) else [value]:
            files.append((name, ("p.png", item, "image/png")))
    return files


def test_plan_reports_the_last_images_crop_and_the_segments(client):
    answer = client.post(
        "/v1/videos/plan", files=_files(image=PHOTO, last_image=PORTRAIT), data={"duration_s": "7"}
    ).json()
    assert answer["output"] == {"width": 832, "height": 624}
    assert answer["last_image"]["output"] == {"width": 832, "height": 624}
    # a 48x64 portrait keeps its full width and a centred 4:3 band: 48 x 36
    assert answer["last_image"]["crop"] == {"left": 0, "top": 14, "right": 48, "bottom": 50}
    assert answer["frames"] == 113 and len(answer["segments"]) == 2
    assert sum(s["kept_frames"] for s in answer["segments"]) == 113


def test_plan_for_views_of_mixed_aspect_ratios(client):
    answer = client.post(
        "/v1/videos/plan", files=_files(images=[PHOTO, PORTRAIT, SQUARE]), data={"transition_s": "1.5"}
    ).json()
    assert answer["duration_s"] == 3.0 and answer["frames"] == 1 + 24 + 24
    assert [v["output"] for v in answer["views"]] == [{"width": 832, "height": 624}] * 3
    assert answer["views"][2]["crop"] == {"left": 0, "top": 7, "right": 60, "bottom": 52}  # 60x45 of 60x60


BAD = [
    ({"images": [PHOTO]}, {}, "images"),
    ({"images": [PHOTO] * 9}, {}, "images"),
    ({"image": PHOTO, "images": [PHOTO, PHOTO]}, {}, "images"),
    ({"last_image": PHOTO}, {}, "last_image"),
    ({"images": [PHOTO, b"not a picture"]}, {}, "images"),
    ({"image": PHOTO}, {"duration_s": "31"}, "duration_s"),
    ({"image": PHOTO}, {"storyboard": "not json"}, "storyboard"),
    ({"image": PHOTO}, {"storyboard": '{"prompt": "x"}'}, "storyboard"),
    ({"image": PHOTO}, {"storyboard": '[{"prompt": "", "duration_s": 2}]'}, "storyboard"),
    ({"image": PHOTO}, {"storyboard": '[{"prompt": "a", "duration_s": 2}]', "duration_s": "3"}, "storyboard"),
    ({"image": PHOTO}, {"transition_s": "2"}, "transition_s"),
]


@pytest.mark.parametrize(("files", "data", "field"), BAD)
def test_bad_video_input_is_a_400_naming_the_field(client, files, data, field):
    answer = client.post("/v1/videos", files=_files(**files), data=data)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field
    if files.get("images") == [PHOTO, b"not a picture"]:
        assert "images[1]" in answer.json()["error"]["message"]  # which view failed
    assert client.get("/v1/jobs").json()["jobs"] == []


def test_storyboard_job_reports_segments_and_renders_every_frame(client, model):
    board = [{"prompt": "turns to the camera", "duration_s": 1.0}, {"prompt": "smiles", "duration_s": 1.0}]
    job = client.post("/v1/videos", files=_files(image=PHOTO), data={"storyboard": json.dumps(board)}).json()
    assert job["params"]["storyboard"] == board and job["params"]["frames"] == 33
    done = wait_for(client, job["id"], final)
    assert done["status"] == "succeeded", done
    assert (done["segment"], done["total_segments"]) == (2, 2)
    assert done["step"] == done["total_steps"] == 8
    video = probe_video(_download(client, job["id"]))
    assert video["frames"] == 33
    assert [r["prompt"] for r in model.renders] == ["turns to the camera", "smiles"]


def test_multi_view_job_has_one_seam_frame_per_transition(client, model):
    job = client.post("/v1/videos", files=_files(images=[PHOTO, PORTRAIT, SQUARE]), data={"transition_s": "0.5"}).json()
    assert job["params"]["views"] == 3
    done = wait_for(client, job["id"], final)
    assert done["status"] == "succeeded", done
    pixels = probe_video(_download(client, job["id"]))["pixels"]
    assert len(pixels) == 1 + 8 + 8 and [r["frames"] for r in model.renders] == [9, 9]
    steps = np.abs(np.diff(pixels.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert steps.min() > 0.05  # no frame is shown twice, at the seam (frame 8) or elsewhere


def test_first_and_last_frame_job_stores_and_uses_the_last_image(client, model):
    job = client.post("/v1/videos", files=_files(image=PHOTO, last_image=PORTRAIT), data={"duration_s": "0.5"}).json()
    assert job["params"]["last_image"] is True
    done = wait_for(client, job["id"], final)
    assert done["status"] == "succeeded", done
    assert len(model.renders) == 1


def _download(client, job_id):
    answer = client.get(f"/v1/jobs/{job_id}/result")
    assert answer.status_code == 200
    path = client.video_generator.results.root / f"downloaded-{job_id}.mp4"
    path.write_bytes(answer.content)
    return path


# ---- batches


def test_batch_is_n_jobs_with_its_id_and_given_seeds_and_prompts(client):
    answer = client.post(
        "/v1/batches",
        files=_files(image=PHOTO),
        data={"variations": "3", "seeds": "[5, 6, 7]", "prompts": '["a", "b", "c"]', "duration_s": "0.5"},
    )
    assert answer.status_code == 202, answer.text
    batch = answer.json()
    assert answer.headers["location"] == f"/v1/batches/{batch['id']}"
    assert [job["params"]["seed"] for job in batch["jobs"]] == [5, 6, 7]
    assert [job["params"]["prompt"] for job in batch["jobs"]] == ["a", "b", "c"]
    assert {job["batch_id"] for job in batch["jobs"]} == {batch["id"]}
    for job in batch["jobs"]:
        wait_for(client, job["id"], final)
    done = client.get(f"/v1/batches/{batch['id']}").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["counts"]["succeeded"] == 3


def test_batch_without_seeds_gets_different_ones(tmp_path):
    with api_client(tmp_path, StandInVideoModel(), CONFIG, start_video_worker=False) as client:
        batch = client.post("/v1/batches", files=_files(image=PHOTO), data={"variations": "4", "seed": "10"}).json()
        drawn = client.post("/v1/batches", files=_files(image=PHOTO), data={"variations": "3"}).json()
    assert [job["params"]["seed"] for job in batch["jobs"]] == [10, 11, 12, 13]
    assert len({job["params"]["seed"] for job in drawn["jobs"]}) == 3


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"variations": "0"}, "variations"),
        ({"variations": "9"}, "variations"),
        ({"variations": "2", "seeds": "[1, 2, 3]"}, "seeds"),
        ({"variations": "2", "prompts": '["only one"]'}, "prompts"),
        ({"seeds": "[1, -2]"}, "seeds"),
        ({"seeds": "1, 2"}, "seeds"),
        ({"duration_s": "99"}, "duration_s"),
    ],
)
def test_bad_batch_input_is_a_400_and_creates_nothing(client, data, field):
    answer = client.post("/v1/batches", files=_files(image=PHOTO), data=data)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field
    assert client.get("/v1/jobs").json()["jobs"] == []


def test_batch_cancel_and_unknown_batch(tmp_path):
    with api_client(tmp_path, StandInVideoModel(), CONFIG, start_video_worker=False) as client:
        batch = client.post("/v1/batches", files=_files(image=PHOTO), data={"variations": "2"}).json()
        assert batch["status"] == "queued" and batch["counts"]["queued"] == 2
        cancelled = client.post(f"/v1/batches/{batch['id']}/cancel").json()
        assert cancelled["status"] == "cancelled" and cancelled["counts"]["cancelled"] == 2
        again = client.post(f"/v1/batches/{batch['id']}/cancel")
        assert again.status_code == 200 and again.json()["counts"]["cancelled"] == 2
        missing = client.get("/v1/batches/" + "0" * 32)
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "batch_id"


def test_a_replica_death_resumes_after_the_last_finished_segment(tmp_path):
    """Kill after segment 2 of 4: the next replica renders segments 3 and 4 only."""

    class ReplicaDied(BaseException):  # not an Exception: nothing records an outcome, like a killed process
        pass

    board = json.dumps([{"prompt": f"part {k}", "duration_s": 0.5} for k in range(4)])
    dying = StandInVideoModel(fail_on_render=3, error=ReplicaDied())
    with api_client(tmp_path, dying, CONFIG, start_video_worker=False) as client:
        job = client.post("/v1/videos", files=_files(image=PHOTO), data={"storyboard": board}).json()
        generator: VideoGenerator = client.video_generator
        claimed = generator.store.claim_next("video", "replica-1")
        with pytest.raises(ReplicaDied):
            generator.run_job(claimed, "replica-1")
        assert len(dying.renders) == 2
        running = client.get(f"/v1/jobs/{job['id']}").json()
        assert running["status"] == "running" and running["segment"] == 3
        # the replica is gone: its lease runs out and the reaper hands the job back to the queue
        assert generator.store.reap_stale(lease_s=0.0, max_attempts=3) == [("requeued", job["id"])]
        healthy = StandInVideoModel()
        generator.pipeline = healthy
        generator.run_job(generator.store.claim_next("video", "replica-2"), "replica-2")
        done = client.get(f"/v1/jobs/{job['id']}").json()
        assert done["status"] == "succeeded", done
        assert len(healthy.renders) == 2  # 2 + 2 renders in all, not 2 + 4
        assert done["timings_s"]["segments_resumed"] == 2 and done["attempts"] == 2
        assert probe_video(_download(client, job["id"]))["frames"] == 33
        # the pieces are gone once the job has ended; the input and the result stay
        leftovers = sorted(p.name.split(".", 1)[1] for p in generator.results.files_of(job["id"]))
        assert leftovers == ["2.mp4", "input.png"]
