"""Image analysis on a tiny random-weight OpenCLIP model built offline, plus the pure colour and prompt rules."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from deployments.http.analyze_routes import RESPONSE_KEYS, analyze_router
from deployments.http.errors import install_error_handlers
from deployments.image_analyzer import ImageAnalyzerDeployment
from pipelines.background.clip_analysis import (
    ATMOSPHERE_PHRASES,
    LIGHTING_OVERRIDES,
    LIGHTING_PHRASES,
    QUALITY_SUFFIX,
    SUBJECTS,
    AnalyzerConfig,
    ImageAnalyzer,
    class_scores,
    colour_stats,
    enrich_prompt,
    lighting_phrase,
)
from pipelines.common.errors import InvalidInputError, ModelNotFoundError
from pipelines.tiny.clip import BARE_CONFIG_FILE, TINY_CLIP, WEIGHTS_FILE, build_tiny_clip
from tests.images import encode, gradient_image

REPO = Path(__file__).resolve().parents[1]
ORANGE, BLUE, WHITE, BLACK = (240, 140, 30), (30, 80, 220), (255, 255, 255), (0, 0, 0)
SUNSET = LIGHTING_OVERRIDES[0][1]
NIGHT = LIGHTING_OVERRIDES[1][1]


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / TINY_CLIP)


@pytest.fixture(scope="module")
def config(tiny_clip_dir: Path) -> AnalyzerConfig:
    return AnalyzerConfig(checkpoint=str(tiny_clip_dir), device="cpu")


@pytest.fixture(scope="module")
def analyzer(config: AnalyzerConfig) -> ImageAnalyzer:
    return ImageAnalyzer.from_config(config)


# --- model behaviour -------------------------------------------------------------------------------------


def test_scores_cover_exactly_the_five_classes_and_sum_to_one(analyzer):
    result = analyzer.analyze(gradient_image(96, 64, seed=3))
    assert tuple(result.scores) == SUBJECTS
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0.0 <= score <= 1.0 for score in result.scores.values())
    assert result.subject == max(result.scores, key=result.scores.get)
    assert result.atmosphere == ATMOSPHERE_PHRASES[result.subject]
    assert result.quality == QUALITY_SUFFIX


def test_analysis_is_deterministic_and_different_images_score_differently(analyzer, config):
    image = gradient_image(80, 80, seed=1)
    first, second = analyzer.analyze(image), analyzer.analyze(image.copy())
    assert first == second
    assert ImageAnalyzer.from_config(config).analyze(image).scores == first.scores
    assert analyzer.analyze(solid(BLUE)).scores != analyzer.analyze(solid(ORANGE)).scores


def test_tiny_build_is_byte_identical_for_a_seed(tmp_path, tiny_clip_dir):
    again = build_tiny_clip(tmp_path / "again", seed=0)
    assert (again / WEIGHTS_FILE).read_bytes() == (tiny_clip_dir / WEIGHTS_FILE).read_bytes()
    other = build_tiny_clip(tmp_path / "other", seed=1)
    assert (other / WEIGHTS_FILE).read_bytes() != (tiny_clip_dir / WEIGHTS_FILE).read_bytes()


def test_class_text_embeddings_are_computed_once(tiny_clip_dir):
    import open_clip

    model_id = f"local-dir:{tiny_clip_dir}"
    model, _, preprocess = open_clip.create_model_and_transforms(model_id)
    calls = []
    encode_text = model.encode_text

    def counting_encode_text(*args, **kwargs):
        calls.append(args[0].shape[0])
        return encode_text(*args, **kwargs)

    model.encode_text = counting_encode_text
    analyzer = ImageAnalyzer(model, preprocess, open_clip.get_tokenizer(model_id))
    assert len(calls) == 1 and calls[0] >= len(SUBJECTS)  # every class prompt in one batch
    for seed in range(3):
        analyzer.analyze(gradient_image(48, 48, seed=seed), prompt="a dog at night")
    assert len(calls) == 1


def test_weights_file_with_a_registered_config_matches_the_folder_layout(analyzer, tiny_clip_dir):
    from_file = ImageAnalyzer.from_config(
        AnalyzerConfig(
            model_name=TINY_CLIP,
            checkpoint=str(tiny_clip_dir / WEIGHTS_FILE),
            config_path=str(tiny_clip_dir / BARE_CONFIG_FILE),
            device="cpu",
        )
    )
    image = gradient_image(64, 64, seed=5)
    assert from_file.analyze(image).scores == pytest.approx(analyzer.analyze(image).scores, abs=1e-6)


def test_tiny_model_is_built_on_first_load(tmp_path):
    from pipelines.tiny.provision import provision_tiny_models

    target = tmp_path / "models" / TINY_CLIP
    config = AnalyzerConfig(checkpoint=str(target), tiny_model=TINY_CLIP, device="cpu")
    with pytest.raises(ModelNotFoundError):  # the production loader only reads; it never builds
        ImageAnalyzer.from_config(config)
    provision_tiny_models(config)
    analyzer = ImageAnalyzer.from_config(config)
    assert (target / WEIGHTS_FILE).is_file()
    assert tuple(analyzer.analyze(solid(WHITE)).scores) == SUBJECTS


# --- missing or wrong checkpoints ------------------------------------------------------------------------


def test_missing_checkpoint_names_the_path(tmp_path):
    missing = tmp_path / "no-such-clip"
    with pytest.raises(ModelNotFoundError) as excinfo:
        ImageAnalyzer.from_config(AnalyzerConfig(checkpoint=str(missing), device="cpu"))
    assert str(missing) in excinfo.value.message


def test_folder_without_weights_is_refused_not_randomly_initialised(tmp_path, tiny_clip_dir):
    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text((tiny_clip_dir / "open_clip_config.json").read_text())
    with pytest.raises(ModelNotFoundError, match="no weights file"):
        ImageAnalyzer.from_config(AnalyzerConfig(checkpoint=str(folder), device="cpu"))


def test_wrong_model_name_or_tiny_name_is_a_clear_error(tiny_clip_dir):
    weights = str(tiny_clip_dir / WEIGHTS_FILE)
    with pytest.raises(ModelNotFoundError, match="does not define model 'ViT-B-32'"):
        ImageAnalyzer.from_config(
            AnalyzerConfig(checkpoint=weights, config_path=str(tiny_clip_dir / BARE_CONFIG_FILE), device="cpu")
        )
    with pytest.raises(ModelNotFoundError, match="could not load"):  # ViT-B-32 shapes vs tiny weights
        ImageAnalyzer.from_config(AnalyzerConfig(checkpoint=weights, device="cpu"))
    from pipelines.tiny.provision import provision_tiny_models

    with pytest.raises(ModelNotFoundError, match="unknown tiny model"):
        provision_tiny_models(AnalyzerConfig(checkpoint=str(tiny_clip_dir), tiny_model="tiny-nope", device="cpu"))


# --- colour, lighting and enrichment rules ---------------------------------------------------------------


def test_warm_cool_and_bright_dark_from_pixels():
    assert colour_stats(solid(ORANGE)).warm and not colour_stats(solid(BLUE)).warm
    assert colour_stats(solid(WHITE)).bright and not colour_stats(solid(BLACK)).bright
    grey = colour_stats(solid((128, 128, 128)))
    assert grey.mean_lab_b == pytest.approx(128, abs=1) and not grey.warm  # neutral is not warm
    # Large photos are area-averaged first; the verdicts must not change.
    big = Image.fromarray(np.tile(np.array(ORANGE, np.uint8), (1500, 2000, 1)))
    assert colour_stats(big).mean_lab_b == pytest.approx(colour_stats(solid(ORANGE)).mean_lab_b, abs=0.5)


def test_analysis_reports_colour_and_the_matching_lighting(analyzer):
    for colour, warm, bright in ((ORANGE, True, True), (BLUE, False, False), (WHITE, False, True)):
        result = analyzer.analyze(solid(colour))
        assert (result.warm, result.bright) == (warm, bright)
        assert result.lighting == LIGHTING_PHRASES[(warm, bright)]
    assert analyzer.analyze(solid(BLACK)).bright is False


def test_prompt_words_override_the_lighting(analyzer):
    assert len(set(LIGHTING_PHRASES.values())) == 4
    assert lighting_phrase(False, False, "A beach at SUNSET") == SUNSET
    assert lighting_phrase(False, True, "portrait in golden hour light") == SUNSET
    assert lighting_phrase(True, True, "neon street") == NIGHT
    assert lighting_phrase(True, True, "a moonlit lake") == NIGHT
    assert lighting_phrase(True, True, "a knight on a horse") == LIGHTING_PHRASES[(True, True)]  # whole words only
    assert analyzer.analyze(solid(ORANGE), prompt="city at night").lighting == NIGHT
    result = analyzer.analyze(solid(BLUE), prompt="waves at sunset")
    assert result.lighting == SUNSET and "sunset" in result.enriched_prompt()
    assert result.enriched_prompt("city at midnight").startswith("city at midnight, night lighting")


def _words(text: str) -> list[str]:
    return [w for w in text.lower().replace(",", " ").split() if w not in {"a", "of", "and", "at", "in", "with"}]


def test_enrichment_adds_phrases_without_repeating_words():
    prompt = "cinematic warm portrait of a woman, soft golden highlights"
    enriched = enrich_prompt(prompt, [LIGHTING_PHRASES[(True, True)], ATMOSPHERE_PHRASES["person"], QUALITY_SUFFIX])
    assert enriched.startswith(prompt + ", ")
    added = _words(enriched[len(prompt) :])
    assert added and len(added) == len(set(added))
    assert not set(added) & set(_words(prompt))
    assert "cinematic" not in enriched[len(prompt) :] and "bright daylight" in enriched
    assert "soft golden highlights" not in enriched[len(prompt) :]  # a clause already present is dropped whole
    # Phrases also de-duplicate against each other, and an empty prompt yields just the phrases.
    assert enrich_prompt(None, ["warm light", "warm glow, light rain"]) == "warm light, glow, rain"
    assert enrich_prompt("  ", [QUALITY_SUFFIX]) == QUALITY_SUFFIX


def test_class_scores_softmax_is_stable():
    scores = class_scores(np.array([0.31, 0.29, 0.2, 0.1, -0.4]))
    assert sum(scores.values()) == pytest.approx(1.0) and max(scores, key=scores.get) == "person"
    assert scores["person"] / scores["animal"] == pytest.approx(np.exp(2.0))  # 100 x 0.02 apart


def test_overlong_prompt_is_rejected(analyzer):
    with pytest.raises(InvalidInputError) as excinfo:
        analyzer.analyze(solid(WHITE), prompt="x" * 5000)
    assert excinfo.value.field == "prompt"


# --- deployment shim and HTTP route ----------------------------------------------------------------------


def test_deployment_shim_returns_the_response_body(analyzer, config):
    deployment = ImageAnalyzerDeployment(config, analyzer=analyzer)
    body = asyncio.run(deployment.analyze(solid(ORANGE), "a cat at dusk"))
    assert set(body) == set(RESPONSE_KEYS)
    assert body["lighting"] == SUNSET and body["enriched_prompt"].startswith("a cat at dusk, ")
    deployment.check_health()


def test_http_layer_does_not_import_torch():
    code = "import sys, deployments.image_analyzer, deployments.http.analyze_routes; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def client(analyzer, config) -> TestClient:
    deployment = ImageAnalyzerDeployment(config, analyzer=analyzer)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(analyze_router(deployment.analyze, max_upload_bytes=2_000_000, max_pixels=4_000_000))
    return TestClient(app)


def test_analyze_route_returns_the_analysis(client):
    png = encode(solid(WHITE, (80, 60)))
    response = client.post("/v1/analyze", files={"image": ("w.png", png, "image/png")}, data={"prompt": "a house"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert tuple(body) == RESPONSE_KEYS
    assert set(body["scores"]) == set(SUBJECTS) and body["bright"] is True and body["warm"] is False
    assert body["enriched_prompt"].startswith("a house, ")
    no_prompt = client.post("/v1/analyze", files={"image": ("w.png", png, "image/png")})
    assert no_prompt.status_code == 200 and not no_prompt.json()["enriched_prompt"].startswith(",")


def test_analyze_route_errors_are_json(client):
    bad = client.post("/v1/analyze", files={"image": ("x.png", b"not an image at all", "image/png")})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_input" and bad.json()["error"]["field"] == "image"
    png = encode(solid(BLACK, (32, 32)))
    unknown = client.post("/v1/analyze", files={"image": ("b.png", png, "image/png")}, data={"seed": "1"})
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "seed"
    missing = client.post("/v1/analyze", data={"prompt": "hello"})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "image"
    too_big = client.post("/v1/analyze", files={"image": ("b.png", b"\0" * 2_100_000, "image/png")})
    assert too_big.status_code in (400, 413) and "error" in too_big.json()
