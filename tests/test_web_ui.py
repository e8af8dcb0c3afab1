"""The web UI at ``/``: its routes (fast), and the page itself driven in a real headless Chromium (slow).

The browser tests run the ingress app of ``tests.api_harness`` (real routes, job queue, tiny Wan and SDXL
pipelines, classic segmentation; no Ray) behind a real uvicorn server on a loopback port, and drive the
Debian ``chromium`` binary through Playwright (its own browser download needs the internet). They skip,
saying why, where Playwright or a Chromium binary is missing.

Screenshots: ``WEB_UI_SCREENSHOTS_DIR=docs/screenshots pytest tests/test_web_ui.py -k screenshots`` writes
the PNGs the docs show; without the variable the same test writes them to a temporary folder and checks them.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from deployments.config import IngressConfig, JobStoreConfig
from deployments.http.api import create_api
from deployments.http.services import ApiServices
from deployments.http.web_ui_routes import STATIC_DIR
from deployments.jobs.results import ResultFiles
from deployments.jobs.sqlite_store import SQLiteJobStore
from tests.api_harness import api_client
from tests.images import encode, gradient_image
from tests.test_backgrounds_api import studio_photo

PHOTO = encode(gradient_image(640, 480), "PNG")
JOB_TIMEOUT_MS = 180_000
MAX_SCREENSHOT_BYTES = 300_000


# ---- the routes, without a browser (fast) ----------------------------------------------------------


@pytest.fixture
def bare_client(tmp_path):
    from fastapi.testclient import TestClient

    store_config = JobStoreConfig(sqlite_path=str(tmp_path / "jobs.sqlite3"), results_dir=str(tmp_path / "results"))
    services = ApiServices(
        store=SQLiteJobStore(store_config.sqlite_path),
        results=ResultFiles(store_config.results_dir),
        settings=IngressConfig(),
        reap_jobs=False,
    )
    with TestClient(create_api(services)) as client:
        yield client


def test_page_and_assets_are_served(bare_client):
    page = bare_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert page.content == (STATIC_DIR / "index.html").read_bytes()
    # every local asset the page names is served with its type
    assets = re.findall(r'(?:src|href)="(/ui/[^"]+)"', page.text)
    assert sorted(assets) == ["/ui/app.css", "/ui/app.js"]
    types = {"/ui/app.css": "text/css; charset=utf-8", "/ui/app.js": "text/javascript; charset=utf-8"}
    for path, content_type in types.items():
        response = bare_client.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == content_type
        assert response.content == (STATIC_DIR / path.removeprefix("/ui/")).read_bytes()


@pytest.mark.parametrize("path", ["/ui/index.html", "/ui/nothing.js", "/ui/..%2Fweb_ui_routes.py", "/ui/"])
def test_only_the_listed_assets_are_served(bare_client, path):
    response = bare_client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
    assert "import" not in response.text  # no file content leaks into the error


def test_ui_routes_stay_out_of_the_openapi_document(bare_client):
    paths = bare_client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not [path for path in paths if path.startswith("/ui")]
    assert "/v1/videos" in paths  # the document itself is still there


def test_static_files_fetch_nothing_from_elsewhere():
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), path.name


# ---- the page in a real browser (slow) -------------------------------------------------------------


def chromium_binary() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_BINARY"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


class LiveServer:
    """The app behind a real uvicorn server on a free loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        # lifespan off: the TestClient around the same app already runs its lifespan (the reaper)
        config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.socket.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary found (apt-get install chromium, or set CHROMIUM_BINARY)")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start
        browser = playwright.chromium.launch(executable_path=binary, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory, wan_pipeline, video_model_config, tiny_models_dir):
    from deployments.background_generator import BackgroundGenerator
    from deployments.config import BackgroundGeneratorConfig
    from deployments.segmenter import SegmenterDeployment
    from pipelines.background.sdxl import BackgroundModelConfig, SdxlBackground
    from pipelines.background.segmentation.chain import SegmentationConfig
    from pipelines.tiny.provision import provision_tiny_models

    sdxl_config = BackgroundModelConfig(
        path=str(tiny_models_dir / "tiny-sdxl"), tiny_model="tiny-sdxl", device="cpu", dtype="float32"
    )
    provision_tiny_models(sdxl_config)
    sdxl = SdxlBackground.from_config(sdxl_config)
    segmenter = SegmenterDeployment(SegmentationConfig())  # the local profile: classic segmentation

    def backgrounds(store, store_config, results, queue):
        config = BackgroundGeneratorConfig(model=sdxl_config)
        generator = BackgroundGenerator(
            config, store_config, queue, segmenter, None, pipeline=sdxl, store=store, results=results
        )
        return generator, segmenter

    tmp_path = tmp_path_factory.mktemp("web_ui")
    with (
        api_client(tmp_path, wan_pipeline, video_model_config, backgrounds=backgrounds) as client,
        LiveServer(client.app) as live,
    ):
        live.api = client
        yield live


@pytest.fixture
def page(browser, server):
    """A fresh tab (own sessionStorage) on the UI; fails the test on any script error or console error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelectorAll('#video-template option').length > 1")
    yield page
    context.close()
    # a 4xx the page asked for on purpose is logged by Chromium as a failed resource load, not a script error
    assert not [p for p in problems if "the server responded with a status of 4" not in p], problems


def choose_photo(page, selector: str, data: bytes = PHOTO, name: str = "photo.png") -> None:
    page.set_input_files(selector, files=[{"name": name, "mimeType": "image/png", "buffer": data}])


def job_card(page, index: int = 0):
    return page.locator("#job-list > li").nth(index)


def wait_for_status(card, status: str, server, timeout_ms: int = JOB_TIMEOUT_MS) -> None:
    """Wait until the card shows ``status``; a card that ends in another final state fails at once, saying why."""
    settled = {status, "succeeded", "failed", "cancelled", "unknown"}
    try:
        card.page.wait_for_function(
            "([card, settled]) => settled.includes(card.dataset.status)",
            arg=[card.element_handle(), sorted(settled)],
            timeout=timeout_ms,
        )
    except Exception as exc:
        raise AssertionError(f"the card never settled: {describe(card, server)}") from exc
    assert card.get_attribute("data-status") == status, describe(card, server)


def describe(card, server) -> str:
    job_id = card.get_attribute("data-job-id")
    return f"card {card.inner_text()!r}; the API says {server.api.get(f'/v1/jobs/{job_id}').json()}"


def record_statuses(page) -> None:
    """Keep every status text a job card shows, to prove the progress arrived live and not only at the end."""
    page.evaluate(
        """() => {
            window.seenStatuses = [];
            new MutationObserver(() => {
                for (const label of document.querySelectorAll('.job-status')) {
                    window.seenStatuses.push(label.textContent);
                }
            }).observe(document.getElementById('job-list'), {subtree: true, childList: true, characterData: true});
        }"""
    )


def submit_video(page, *, duration: str = "0.5", seed: str = "11", template: str | None = None) -> None:
    choose_photo(page, "#video-image")
    if template:
        page.select_option("#video-template", template)
    page.fill("#video-prompt", "slow push-in")
    page.fill("#video-duration", duration)
    page.fill("#video-seed", seed)
    page.click("#video-form button[type=submit]")


def submit_background(page, *, steps: str = "4", seed: str = "3") -> None:
    page.click("#tab-background")
    choose_photo(page, "#background-image", studio_photo(), "studio.png")
    page.select_option("#background-scene", "white_studio")
    page.fill("#background-steps", steps)
    page.fill("#background-seed", seed)
    page.click("#background-form button[type=submit]")


@pytest.mark.slow
def test_template_pickers_list_every_template(page, server):
    motion = server.api.get("/v1/templates/motion").json()["categories"]
    scenes = server.api.get("/v1/templates/scenes").json()["templates"]
    motion_ids = [template["id"] for category in motion for template in category["prompts"]]
    listed = page.eval_on_selector_all("#video-template optgroup option", "options => options.map(o => o.value)")
    assert listed == motion_ids and len(listed) == 72
    groups = page.eval_on_selector_all("#video-template optgroup", "groups => groups.map(g => g.label)")
    assert groups == [category["name"] for category in motion]
    page.wait_for_function("document.querySelectorAll('#background-scene optgroup option').length > 0")
    scene_ids = page.eval_on_selector_all("#background-scene optgroup option", "options => options.map(o => o.value)")
    assert sorted(scene_ids) == sorted(template["id"] for template in scenes) and len(scene_ids) == 24
    # choosing a template shows its prompt
    page.select_option("#video-template", motion_ids[0])
    assert motion[0]["prompts"][0]["prompt"] in page.inner_text("#video-template-prompt")


@pytest.mark.slow
def test_video_job_from_upload_to_a_playable_video(page, server):
    choose_photo(page, "#video-image")
    page.fill("#video-duration", "0.5")
    page.click("text=Preview plan")
    page.wait_for_function("document.getElementById('video-plan').textContent.length > 0")
    assert page.inner_text("#video-plan") == "Output 832×624, 9 frames at 16 fps (0.5 s) from a 640×480 photo."

    record_statuses(page)
    submit_video(page, template="fashion_beauty_facial.hair_breeze")
    card = job_card(page)
    wait_for_status(card, "succeeded", server)
    assert "running" in page.evaluate("window.seenStatuses")  # progress arrived while it ran
    assert card.locator("progress").evaluate("bar => bar.value") == 1
    assert card.locator(".job-step").inner_text() == "step 4 of 4"
    assert "832×624, 9 frames at 16 fps, 4 steps, seed 11" in card.locator(".job-summary").inner_text()
    video = card.locator("video")
    assert video.get_attribute("src").startswith("blob:")
    # the MP4 really decodes in the browser: its metadata gives the planned size
    page.wait_for_function("video => video.readyState >= 1", arg=video.element_handle(), timeout=30_000)
    assert video.evaluate("v => [v.videoWidth, v.videoHeight, v.duration > 0]") == [832, 624, True]

    # the job list survives a reload of the tab (sessionStorage) and shows the finished result again
    job_id = card.get_attribute("data-job-id")
    assert server.api.get(f"/v1/jobs/{job_id}").json()["params"]["template_id"] == "fashion_beauty_facial.hair_breeze"
    page.reload()
    restored = job_card(page)
    assert restored.get_attribute("data-job-id") == job_id
    wait_for_status(restored, "succeeded", server, 30_000)
    restored.locator("video").wait_for()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("field", "selector", "value", "words"),
    [
        ("seed", "#video-seed", "99999999999999999999", "seed"),
        ("duration_s", "#video-duration", "61", "duration_s"),
        ("steps", "#video-steps", "3", "steps"),
    ],
)
def test_a_refused_field_shows_its_message_next_to_it(page, server, field, selector, value, words):
    choose_photo(page, "#video-image")
    page.fill(selector, value)
    page.click("#video-form button[type=submit]")
    slot = page.locator(f'#video-form [data-error-for="{field}"]')
    slot.wait_for(state="visible")
    assert words in slot.inner_text()
    assert page.get_attribute(selector, "aria-invalid") == "true"
    # it is the API's own message, and nothing else on the form shows an error
    errors = page.eval_on_selector_all("#video-form [data-error-for]", "slots => slots.filter(s => s.textContent)")
    assert len(errors) == 1
    assert page.locator("#job-list > li").count() == 0
    # a corrected value clears the message on the next try
    page.fill(selector, "")
    page.fill("#video-duration", "0.5")
    page.click("text=Preview plan")
    page.wait_for_function("document.getElementById('video-plan').textContent.length > 0")
    assert slot.inner_text() == ""


@pytest.mark.slow
def test_a_background_without_scene_or_prompt_is_refused_at_the_prompt(page, server):
    direct = server.api.post("/v1/backgrounds", files={"image": ("s.png", studio_photo(), "image/png")})
    assert direct.status_code == 400 and direct.json()["error"]["field"] == "prompt"
    page.click("#tab-background")
    choose_photo(page, "#background-image", studio_photo(), "studio.png")
    page.click("#background-form button[type=submit]")  # neither a scene nor a prompt
    slot = page.locator('#background-form [data-error-for="prompt"]')
    slot.wait_for(state="visible")
    assert slot.inner_text() == direct.json()["error"]["message"]
    assert page.get_attribute("#background-prompt", "aria-invalid") == "true"


@pytest.mark.slow
@pytest.mark.parametrize("field", [None, "images"])
def test_an_error_naming_no_field_of_the_form_goes_to_its_error_line(page, server, field):
    # a queue-full answer, which a test server cannot be made to give on demand, is scripted in the browser
    detail = {"type": "overloaded", "message": "the video queue is full; retry in 30 s"}
    if field:
        detail["field"] = field
    page.route(
        "**/v1/videos",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "30"},
            content_type="application/json",
            body=json.dumps({"error": detail}),
        ),
    )
    choose_photo(page, "#video-image")
    page.click("#video-form button[type=submit]")
    general = page.locator('#video-form [data-error-for=""]')
    general.wait_for(state="visible")
    assert general.inner_text() == "the video queue is full; retry in 30 s"
    assert page.locator("#video-form [aria-invalid]").count() == 0
    assert page.locator("#job-list > li").count() == 0


@pytest.mark.slow
def test_mask_preview_shows_the_png(page, server):
    page.click("#tab-background")
    choose_photo(page, "#background-image", studio_photo(), "studio.png")
    page.select_option("#background-composition", "left")
    page.fill("#background-feather", "4")
    page.click("text=Preview mask")
    image = page.locator("#mask-image")
    image.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [320, 240]
    assert re.fullmatch(
        r"Mask by the classic stage \(ok\): \d+\.\d % of the photo is kept\.", page.inner_text("#mask-caption")
    )


@pytest.mark.slow
def test_background_job_shows_the_composited_png(page, server):
    submit_background(page)
    card = job_card(page)
    wait_for_status(card, "succeeded", server)
    image = card.locator(".job-result img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [320, 240]
    link = card.locator(".job-download")
    assert link.get_attribute("download").endswith(".png") and link.get_attribute("href").startswith("blob:")


@pytest.mark.slow
def test_cancel_a_queued_and_a_running_job(page, server):
    # the tiny pipelines run one video at a time: the second job waits in the queue behind the first
    submit_video(page, duration="5", seed="1")
    page.wait_for_function("document.querySelectorAll('#job-list > li').length === 1")
    submit_video(page, duration="5", seed="2")
    page.wait_for_function("document.querySelectorAll('#job-list > li').length === 2")
    queued, running = job_card(page, 0), job_card(page, 1)
    wait_for_status(running, "running", server, 60_000)
    assert queued.get_attribute("data-status") == "queued"

    queued.locator(".job-cancel").click()
    wait_for_status(queued, "cancelled", server, 10_000)
    running.locator(".job-cancel").click()
    wait_for_status(running, "cancelled", server, 120_000)
    for card in (queued, running):
        assert card.locator(".job-cancel").is_hidden()
        assert server.api.get(f"/v1/jobs/{card.get_attribute('data-job-id')}").json()["status"] == "cancelled"


@pytest.mark.slow
def test_more_unfinished_jobs_than_streams_are_all_followed_to_the_end(page, server):
    # jobs submitted elsewhere in this tab's session, then the tab is reloaded: it follows every one of
    # them, three over event streams and the rest by polling (a browser allows six connections per server)
    ids = []
    for seed in range(4):
        response = server.api.post(
            "/v1/videos",
            files={"image": ("p.png", PHOTO, "image/png")},
            data={"duration_s": "0.5", "seed": str(seed)},
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    entries = [{"id": job_id, "kind": "video", "summary": f"seed {n}"} for n, job_id in enumerate(ids)]
    page.evaluate("entries => sessionStorage.setItem('vividflow.jobs', JSON.stringify(entries))", entries)
    streams = {"open": 0, "most": 0, "polls": 0}

    def opened(request):
        if request.url.endswith("/events"):
            streams["open"] += 1
            streams["most"] = max(streams["most"], streams["open"])
        elif re.search(r"/v1/jobs/[0-9a-f]+$", request.url):
            streams["polls"] += 1

    def closed(request):
        if request.url.endswith("/events"):
            streams["open"] -= 1

    page.on("request", opened)
    page.on("requestfinished", closed)
    page.on("requestfailed", closed)
    page.reload()
    assert page.locator("#job-list > li").count() == 4
    for index in range(4):
        wait_for_status(job_card(page, index), "succeeded", server)
    # each card fetches its result after showing "succeeded": wait for the last player to be added
    page.wait_for_function("() => document.querySelectorAll('#job-list video').length === 4", timeout=30_000)
    assert streams["most"] == 3 and streams["polls"] >= 1, streams


@pytest.mark.slow
def test_api_key_is_sent_as_bearer_on_every_request(page, server):
    page.fill("#api-key", "sk-test-123")
    page.click("text=Use key")
    assert page.inner_text("#api-key-state") == "sent with every request"
    seen: list[tuple[str, str | None]] = []
    page.on("request", lambda request: seen.append((request.url, request.headers.get("authorization"))))
    page.reload()  # the key is kept in this tab's sessionStorage and used from the first request on
    page.wait_for_function("document.querySelectorAll('#video-template option').length > 1")
    assert page.input_value("#api-key") == "sk-test-123"
    choose_photo(page, "#video-image")
    page.click("text=Preview plan")
    page.wait_for_function("document.getElementById('video-plan').textContent.length > 0")
    api_calls = [(url, auth) for url, auth in seen if "/v1/" in url]
    assert {url.removeprefix(server.url) for url, _ in api_calls} >= {
        "/v1/templates/motion",
        "/v1/templates/scenes",
        "/v1/videos/plan",
    }
    assert {auth for _, auth in api_calls} == {"Bearer sk-test-123"}
    page.click("#api-key-clear")
    assert page.evaluate("sessionStorage.getItem('vividflow.apiKey')") is None


@pytest.mark.slow
def test_screenshots_of_both_forms_with_finished_jobs(page, server, tmp_path):
    folder = Path(os.environ.get("WEB_UI_SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    choose_photo(page, "#video-image", studio_photo(640, 480), "portrait.png")
    page.select_option("#video-template", "fashion_beauty_facial.hair_breeze")
    page.fill("#video-duration", "1")
    page.fill("#video-seed", "42")
    page.click("text=Preview plan")
    page.wait_for_function("document.getElementById('video-plan').textContent.length > 0")
    page.click("#video-form button[type=submit]")
    wait_for_status(job_card(page), "succeeded", server)
    video = job_card(page).locator("video")
    page.wait_for_function("video => video.readyState >= 2", arg=video.element_handle(), timeout=30_000)
    shots = {"web-ui-video.png": page.screenshot(full_page=True)}

    submit_background(page)
    page.click("text=Preview mask")
    page.locator("#mask-image").wait_for(state="visible")
    wait_for_status(job_card(page), "succeeded", server)
    page.locator(".job-result img").first.wait_for(state="visible")
    shots["web-ui-background.png"] = page.screenshot(full_page=True)

    for name, png in shots.items():
        small = shrink_png(png)
        assert len(small) < MAX_SCREENSHOT_BYTES, (name, len(small))
        with Image.open(io.BytesIO(small)) as image:
            assert image.format == "PNG" and image.width == 1280 and image.height >= 700
        (folder / name).write_bytes(small)


def shrink_png(png: bytes) -> bytes:
    """A palette PNG of the screenshot: the UI has few colours, and tiny random-weight results are noise
    that would otherwise make each file several hundred kilobytes."""
    with Image.open(io.BytesIO(png)) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
