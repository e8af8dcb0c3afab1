"""The OpenAPI document is the contract: it validates, it documents the one error body, and the app keeps to it.

The app is the Ray-free ingress of ``tests.api_harness`` with no job workers started: job creation is real
(input stored, record in SQLite, 202 with the job), rendering never happens. A few jobs in each state are made
up front so the job routes answer 200/409 as well as 404 during the fuzz.
"""

from __future__ import annotations

import collections
from types import SimpleNamespace

import hypothesis.configuration
import hypothesis.strategies as st
import pytest
import schemathesis
from openapi_spec_validator import OpenAPIV31SpecValidator
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deployments.background_generator import BackgroundGenerator
from deployments.config import BackgroundGeneratorConfig, VideoEditorConfig
from deployments.segmenter import SegmenterDeployment
from deployments.video_editor import VideoEditor
from pipelines.background.sdxl import BackgroundModelConfig
from pipelines.background.segmentation.chain import SegmentationConfig
from pipelines.edit.config import EditModelConfig
from pipelines.video.config import MotionLoraLibraryConfig, VideoModelConfig
from tests.api_harness import api_client
from tests.edit_videos import video_bytes
from tests.images import encode, gradient_image
from tests.lora_fixtures import tiny_library

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")

# Every operation of the public API; the document may list more (``/metrics``).
OPERATIONS = {
    ("get", "/healthz"),
    ("post", "/v1/videos/plan"),
    ("post", "/v1/videos"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{job_id}"),
    ("delete", "/v1/jobs/{job_id}"),
    ("get", "/v1/jobs/{job_id}/result"),
    ("post", "/v1/jobs/{job_id}/cancel"),
    ("get", "/v1/jobs/{job_id}/events"),
    ("get", "/v1/templates/motion"),
    ("get", "/v1/templates/scenes"),
    ("post", "/v1/prompts/expand"),
    ("post", "/v1/backgrounds/mask"),
    ("post", "/v1/backgrounds"),
    ("post", "/v1/analyze"),
    ("get", "/v1/loras"),
    ("post", "/v1/loras/reload"),
    ("post", "/v1/edits/plan"),
    ("post", "/v1/edits"),
    ("post", "/v1/batches"),
    ("get", "/v1/batches/{batch_id}"),
    ("post", "/v1/batches/{batch_id}/cancel"),
}

# The multipart upload endpoints and the form fields each accepts (an unknown field is a 400).
COMPOSITION_FIELDS = {"image", "composition", "focus", "feather_px"}
VIDEO_LAYOUT_FIELDS = {"image", "last_image", "images", "duration_s", "transition_s", "storyboard"}
VIDEO_LAYOUT_PATHS = {"/v1/videos", "/v1/videos/plan", "/v1/batches"}
BATCH_LISTS = {"seeds", "prompts", "variations"}
VIDEO_FIELDS = {
    "prompt",
    "negative_prompt",
    "template_id",
    "duration_s",
    "steps",
    "guidance_scale",
    "guidance_scale_2",
    "seed",
    "expand_prompt",
    "webhook_url",
    "lora",
    "lora_strength",
}
UPLOAD_FORMS = {
    "/v1/videos/plan": VIDEO_LAYOUT_FIELDS,
    "/v1/videos": VIDEO_LAYOUT_FIELDS | VIDEO_FIELDS,
    "/v1/batches": VIDEO_LAYOUT_FIELDS | VIDEO_FIELDS | {"variations", "seeds", "prompts"},
    "/v1/backgrounds/mask": COMPOSITION_FIELDS,
    "/v1/backgrounds": COMPOSITION_FIELDS
    | {"scene_id", "prompt", "negative_prompt", "steps", "guidance_scale", "seed", "enrich_prompt"}
    | {"background_image", "background_color", "fit", "position", "output", "webhook_url"},
    "/v1/analyze": {"image", "prompt"},
    "/v1/edits/plan": {"video"},
    "/v1/edits": {"video", "prompt", "mode", "negative_prompt", "reference_image", "control", "strength", "steps"}
    | {"guidance_scale", "seed", "keep_audio", "webhook_url"},
}

# Error statuses each operation is known to answer with (from the code paths and tests/test_api.py); the
# document must list at least these. 429 wherever a queue or a model deployment can be full, 503 wherever a
# feature may be undeployed or the store unreachable.
REQUIRED_ERROR_STATUSES = {
    ("get", "/healthz"): {"503"},
    ("post", "/v1/videos/plan"): {"400", "413"},
    ("post", "/v1/videos"): {"400", "413", "422", "429", "503"},
    ("get", "/v1/jobs"): {"400"},
    ("get", "/v1/jobs/{job_id}"): {"404"},
    ("delete", "/v1/jobs/{job_id}"): {"404"},
    ("get", "/v1/jobs/{job_id}/result"): {"404", "409"},
    ("post", "/v1/jobs/{job_id}/cancel"): {"404", "409"},
    ("get", "/v1/jobs/{job_id}/events"): {"404"},
    ("post", "/v1/prompts/expand"): {"400"},
    ("post", "/v1/backgrounds/mask"): {"400", "413", "429", "503"},
    ("post", "/v1/backgrounds"): {"400", "413", "422", "429", "503"},
    ("post", "/v1/analyze"): {"400", "413", "429", "503"},
    ("post", "/v1/loras/reload"): {"503"},
    ("post", "/v1/edits/plan"): {"400", "413"},
    ("post", "/v1/edits"): {"400", "413", "422", "429", "503"},
    ("post", "/v1/batches"): {"400", "413", "422", "429", "503"},
    ("get", "/v1/batches/{batch_id}"): {"404"},
    ("post", "/v1/batches/{batch_id}/cancel"): {"404"},
}

VALID_IMAGE = encode(gradient_image(160, 120), "PNG")
VALID_VIDEO = video_bytes(frames=8, fps=16, width=32, height=32)


class NoRender:
    """Stands in for the video and SDXL pipelines: no worker is started, so nothing may ever call it."""

    def __call__(self, *args, **kwargs):
        raise AssertionError("the contract tests never render")


async def _analyze(image, prompt):
    # The shape of ImageAnalyzerDeployment.analyze (tiny open_clip, recorded once): the route picks its keys.
    lighting, atmosphere = "cool dim light, deep blue shadows", "natural expression, intimate portrait mood"
    return {
        "subject": "person",
        "scores": {"person": 0.96, "animal": 0.01, "object": 0.01, "nature": 0.01, "building": 0.01},
        "warm": False,
        "bright": False,
        "lighting": lighting,
        "atmosphere": atmosphere,
        "enriched_prompt": ", ".join(part for part in (prompt, lighting, atmosphere) if part),
    }


async def _expand(prompt, seed):
    text = f"{prompt}, the camera glides forward"
    return {"prompt": text, "original": prompt, "expanded": True, "reason": None, "seconds": 0.01}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """The whole HTTP app without Ray: every feature deployed (in process), no job worker running."""
    tmp_path = tmp_path_factory.mktemp("contract")
    segmenter = SegmenterDeployment(SegmentationConfig())  # classic segmentation only: cheap, no model files

    def backgrounds(store, store_config, results, queue):
        config = BackgroundGeneratorConfig(model=BackgroundModelConfig(path=str(tmp_path / "no-sdxl")))
        generator = BackgroundGenerator(
            config,
            store_config,
            queue,
            segmenter,
            None,
            pipeline=NoRender(),
            store=store,
            results=results,
            start_worker=False,
        )
        return generator, segmenter

    with api_client(
        tmp_path,
        NoRender(),
        VideoModelConfig(
            path=str(tmp_path / "no-wan"), device="cpu", loras=MotionLoraLibraryConfig(path=str(tiny_library()))
        ),
        expand_prompt=_expand,
        analyze_image=_analyze,
        backgrounds=backgrounds,
        editor=lambda store, store_config, results, queue: VideoEditor(
            VideoEditorConfig(model=EditModelConfig(path=str(tmp_path / "no-vace"))),
            store_config,
            queue,
            segmenter,
            pipeline=NoRender(),
            store=store,
            results=results,
            start_worker=False,
        ),
        start_video_worker=False,
    ) as client:
        yield SimpleNamespace(client=client, app=client.app, store=client.video_generator.store)


@pytest.fixture(scope="module")
def document(harness) -> dict:
    response = harness.client.get("/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()


def _operations(document: dict):
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node = document
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def _is_string(document: dict, schema: dict) -> bool:
    """``type: string``, or pydantic's ``str | None`` (``anyOf`` of string and null)."""
    schema = _resolve(document, schema)
    if schema.get("type") == "string":
        return True
    variants = [_resolve(document, variant) for variant in schema.get("anyOf", [])]
    types = {variant.get("type") for variant in variants}
    return "string" in types and types <= {"string", "null"}


def _is_binary(schema: dict) -> bool:
    return schema.get("type") == "string" and (
        schema.get("format") == "binary" or schema.get("contentMediaType") == "application/octet-stream"
    )


# --- the document ---------------------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in OpenAPIV31SpecValidator(document).iter_errors()
    ]
    assert not errors, "\n".join(errors)


def test_every_operation_is_documented(document):
    documented = {(method, path) for method, path, _ in _operations(document)}
    assert documented >= OPERATIONS, f"missing from the document: {sorted(OPERATIONS - documented)}"


def test_no_fastapi_default_validation_error(document):
    schemas = document.get("components", {}).get("schemas", {})
    assert not {"HTTPValidationError", "ValidationError"} & set(schemas), sorted(schemas)
    offenders = []
    for method, path, operation in _operations(document):
        response = operation.get("responses", {}).get("422")
        if response is None:
            continue
        for media in response.get("content", {}).values():
            if "HTTPValidationError" in str(media.get("schema", {})) or "detail" in _resolve(
                document, media.get("schema", {})
            ).get("properties", {}):
                offenders.append(f"{method.upper()} {path}")
    assert not offenders, f"FastAPI's default 422 is still documented on: {offenders}"


def test_every_error_response_is_the_one_error_body(document):
    refs, problems = collections.defaultdict(list), []
    for method, path, operation in _operations(document):
        for status, response in operation.get("responses", {}).items():
            if status[:1] not in ("4", "5") and status != "default":
                continue
            label = f"{method.upper()} {path} {status}"
            response = _resolve(document, response)
            content = response.get("content", {})
            if "application/json" not in content:
                problems.append(f"{label}: no application/json content ({sorted(content)})")
                continue
            schema = content["application/json"].get("schema", {})
            if set(schema) != {"$ref"}:
                problems.append(f"{label}: the schema is inline, not a reference to the error schema: {schema}")
                continue
            refs[schema["$ref"]].append(label)
    assert not problems, "\n".join(problems)
    assert refs, "no operation documents any 4xx/5xx response"
    assert len(refs) == 1, f"more than one error schema: { {ref: labels[:3] for ref, labels in refs.items()} }"

    (ref,) = refs
    body = _resolve(document, {"$ref": ref})
    assert body.get("type") == "object" and set(body.get("properties", {})) == {"error"}, body
    assert body.get("required") == ["error"], body
    detail = _resolve(document, body["properties"]["error"])
    properties = detail.get("properties", {})
    assert detail.get("type") == "object" and set(properties) == {"type", "message", "field"}, detail
    assert set(detail.get("required", [])) == {"type", "message"}, detail
    assert _resolve(document, properties["type"]).get("type") == "string", properties["type"]
    assert _resolve(document, properties["message"]).get("type") == "string", properties["message"]
    assert _is_string(document, properties["field"]), properties["field"]


def test_each_operation_documents_the_errors_it_can_answer_with(document):
    missing = {}
    for method, path, operation in _operations(document):
        expected = REQUIRED_ERROR_STATUSES.get((method, path), set())
        absent = expected - set(operation.get("responses", {}))
        if absent:
            missing[f"{method.upper()} {path}"] = sorted(absent)
    assert not missing, f"undocumented error statuses: {missing}"


@pytest.mark.parametrize("path", sorted(UPLOAD_FORMS))
def test_upload_endpoints_declare_their_multipart_form(document, path):
    operation = document["paths"][path]["post"]
    body = operation.get("requestBody")
    assert body is not None, f"POST {path} declares no request body"
    assert body.get("required") is True, body
    assert "multipart/form-data" in body.get("content", {}), sorted(body.get("content", {}))
    schema = _resolve(document, body["content"]["multipart/form-data"].get("schema", {}))
    properties = schema.get("properties", {})
    assert set(properties) == UPLOAD_FORMS[path], sorted(properties)
    upload = "video" if path.startswith("/v1/edits") else "image"
    if set(properties) >= VIDEO_LAYOUT_FIELDS:  # `image` or `images` (2-8 files): the route requires one
        assert _is_binary(_resolve(document, properties["images"]["items"])), properties["images"]
    else:
        assert upload in schema.get("required", []), schema.get("required")
    assert _is_binary(_resolve(document, properties[upload])), properties[upload]


def test_prompt_expansion_declares_its_json_body(document):
    body = document["paths"]["/v1/prompts/expand"]["post"].get("requestBody", {})
    assert "application/json" in body.get("content", {}), body


# --- the app keeps to it: a bounded, seeded schema-driven fuzz ----------------------------------------------

FUZZ_CONFIG = {
    "seed": 20250611,
    "max-stream-events": 2,  # an event stream is cut after its first events
    "request-timeout": 20,
    "generation": {
        "max-examples": 25,  # generated requests per operation, positive and negative together
        "no-shrink": True,
        "deterministic": True,
        "database": "none",  # no .hypothesis/ folder in the repository
    },
    "phases": {
        "examples": {"enabled": True},
        # deterministic boundary cases of every field (hundreds of cheap 400s), and unexpected methods (405)
        "coverage": {"enabled": True},
        # Values seen in responses (job ids) are not fed back into requests: the fixed jobs below do that.
        "fuzzing": {"enabled": True, "extra-data-sources": {"responses": False}},
        "stateful": {"enabled": False},
    },
}
FUZZ_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
JOB_CREATING = {("POST", "/v1/videos"), ("POST", "/v1/backgrounds")}
FUZZ_STATUSES: collections.Counter = collections.Counter()


def _make_jobs(harness) -> dict[str, str]:
    """One job in each state; a worker's part is played through the store, with stand-in result files."""
    client, store = harness.client, harness.store
    results = harness.client.video_generator.results

    def submit(path: str, **fields) -> str:
        files = {"image": ("photo.png", VALID_IMAGE, "image/png")}
        response = client.post(path, files=files, data={key: str(value) for key, value in fields.items()})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def finish(kind: str, job_id: str, extension: str, content_type: str, data: bytes) -> None:
        claimed = store.claim_next(kind, "contract-test-worker")
        assert claimed is not None and claimed.id == job_id
        path = results.path_for(job_id, extension)
        path.write_bytes(data)
        info = {"path": str(path), "content_type": content_type, "bytes": len(data)}
        assert store.succeed(job_id, info, {"export": 0.01}, worker="contract-test-worker")

    jobs = {"succeeded_video": submit("/v1/videos", duration_s=0.5, seed=1)}
    finish("video", jobs["succeeded_video"], "mp4", "video/mp4", b"\x00\x00\x00\x18ftypmp42 stand-in")
    jobs["succeeded_background"] = submit("/v1/backgrounds", prompt="a quiet beach", seed=2)
    finish("background", jobs["succeeded_background"], "png", "image/png", VALID_IMAGE)
    jobs["failed"] = submit("/v1/videos", duration_s=0.5, seed=3)
    assert store.claim_next("video", "contract-test-worker").id == jobs["failed"]
    assert store.fail(jobs["failed"], "internal_error", "stand-in failure", worker="contract-test-worker")
    jobs["cancelled"] = submit("/v1/videos", duration_s=0.5, seed=4)
    assert client.post(f"/v1/jobs/{jobs['cancelled']}/cancel").status_code == 200
    jobs["queued"] = submit("/v1/videos", duration_s=0.5, seed=5)
    jobs["deletable"] = submit("/v1/videos", duration_s=0.5, seed=6)
    return jobs


OWN_BACKGROUND_FIELDS = {"background_image", "background_color", "fit", "position", "output"}
GENERATION_FIELDS = {"scene_id", "prompt", "negative_prompt"}


def _background_variants(body: dict) -> list[dict]:
    """Random background forms nearly always mix a generated and an own background (a 400): add one body
    with the own-background fields left out and one with a real picture and no generation fields."""
    # a random `webhook_url` is never an allowed target (400) either
    generated = {key: value for key, value in body.items() if key not in OWN_BACKGROUND_FIELDS | {"webhook_url"}}
    if not generated.get("scene_id") and not generated.get("prompt"):
        generated["prompt"] = "a quiet beach"
    own = {
        key: value
        for key, value in body.items()
        if key not in GENERATION_FIELDS | {"background_color", "webhook_url", "fit", "position", "output"}
    }
    return [generated, {**own, "background_image": VALID_IMAGE}]


def _lora_variants(body: dict) -> list[dict]:
    """A random `lora` is never a library id (400): add one body without the LoRA fields and one naming a real one."""
    plain = {key: value for key, value in body.items() if key not in ("lora", "lora_strength")}
    return [plain, {**plain, "lora": "tiny-orbit"}]


@pytest.fixture(scope="module")
def api_schema(harness, tmp_path_factory):
    jobs = _make_jobs(harness)
    # Hypothesis caches the constants it mines from source files under ./.hypothesis even with no database.
    hypothesis.configuration.set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", harness.app, config=schemathesis.Config.from_dict(FUZZ_CONFIG)
    )

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        if not isinstance(path_parameters, dict) or "job_id" not in path_parameters:
            return st.just(path_parameters)
        events = context.operation.path.endswith("/events")
        if context.operation.method.lower() == "delete":  # deleting the fixed jobs would starve the others
            return st.sampled_from([path_parameters, {**path_parameters, "job_id": jobs["deletable"]}])
        # a queued job's event stream would only end at the read timeout
        ids = [job_id for state, job_id in jobs.items() if not (events and state == "queued") and state != "deletable"]
        return st.sampled_from([path_parameters] + [{**path_parameters, "job_id": job_id} for job_id in ids])

    @schema.hook
    def flatmap_body(context, body):
        # Random bytes are never an image (400); half the time send a real one so the 2xx paths run too.
        if isinstance(body, dict) and "video" in body:  # likewise a real (tiny) video for the edit routes
            usable = {key: value for key, value in body.items() if key != "reference_image"}
            return st.sampled_from([body, {**usable, "video": VALID_VIDEO, "mode": "style"}])
        if isinstance(body, dict) and context.operation.path in VIDEO_LAYOUT_PATHS:
            # `image` is optional beside `images`, and random layouts nearly always break a rule (a 400):
            # add bodies with one real image and no other layout field.
            single = {key: value for key, value in body.items() if key not in VIDEO_LAYOUT_FIELDS | BATCH_LISTS}
            variants = [body, {**single, "image": VALID_IMAGE}, {**single, "image": VALID_IMAGE, "duration_s": 0.5}]
            if context.operation.path != "/v1/videos/plan":
                variants += _lora_variants(variants[2])
            return st.sampled_from(variants)
        if isinstance(body, dict) and "image" in body:
            variants = [body, {**body, "image": VALID_IMAGE}]
            if context.operation.path == "/v1/backgrounds":
                variants += _background_variants(variants[1])
            if context.operation.path == "/v1/videos":
                variants += _lora_variants(variants[1])
            return st.sampled_from(variants)
        return st.just(body)

    yield schema
    hypothesis.configuration.set_hypothesis_home_dir(None)


def test_the_app_answers_as_documented(api_schema, subtests):
    """Every operation, examples then generated (positive and negative) requests; one subtest per operation."""

    def call(case):
        response = case.call_and_validate(checks=FUZZ_CHECKS)
        FUZZ_STATUSES[(case.method.upper(), case.path, response.status_code)] += 1

    # What `schemathesis.pytest.from_fixture(...).parametrize()` runs; that wrapper itself reads
    # `request.node._nodeid`, which pytest 9.2 no longer has (schemathesis 4.32.5).
    tests = list(get_all_tests(schema=api_schema, test_func=call, settings=None, given_kwargs=None))
    assert len(tests) >= len(OPERATIONS)
    for result in tests:
        if isinstance(result, Ok):
            operation, run = result.ok()
            with subtests.test(msg=f"{operation.method.upper()} {operation.path}"):
                run()
        else:
            error = result.err()
            with subtests.test(msg=f"invalid schema {error.method} {error.path}"):
                pytest.fail(str(error))


def test_the_fuzz_reached_every_operation_and_created_jobs():
    if not FUZZ_STATUSES:
        pytest.skip("the fuzz did not run in this session")
    reached = {(method.lower(), path) for method, path, _ in FUZZ_STATUSES}
    assert reached >= OPERATIONS, f"never called: {sorted(OPERATIONS - reached)}"
    created = {(method, path) for method, path, status in FUZZ_STATUSES if status == 202}
    assert created >= JOB_CREATING, f"no job created by: {sorted(JOB_CREATING - created)}; {dict(FUZZ_STATUSES)}"
