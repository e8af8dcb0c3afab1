"""The segmentation chain on tiny ONNX stand-ins built offline: every stage accepted and rejected."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from deployments.segmenter import SegmenterDeployment
from pipelines.background.segmentation.chain import (
    BIREFNET_FILE,
    U2NET_FILE,
    SegmentationConfig,
    Segmenter,
    cartoon_features,
    firm_mask,
    judge_mask,
)
from pipelines.common.errors import InvalidInputError, ModelNotFoundError
from pipelines.tiny.segmentation import TINY_BIREFNET, TINY_U2NET, build_tiny_birefnet, build_tiny_u2net
from tests.images import gradient_image

INK = (15, 15, 15)


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmentation-models")
    return {
        "u2net": build_tiny_u2net(root / "u2net-random"),
        "birefnet": build_tiny_birefnet(root / "birefnet-random"),
        "u2net_blob": build_tiny_u2net(root / "u2net-blob", blob=True),
        "birefnet_blob": build_tiny_birefnet(root / "birefnet-blob", blob=True),
    }


def studio_photo(width: int = 320, height: int = 240) -> tuple[Image.Image, np.ndarray]:
    """A head-and-body subject on a light backdrop with a little sensor noise, and its true mask."""
    yy, xx = np.mgrid[0:height, 0:width]
    body = ((xx - width / 2) / (width * 0.18)) ** 2 + ((yy - height * 0.65) / (height * 0.35)) ** 2 <= 1
    head = ((xx - width / 2) / (width * 0.08)) ** 2 + ((yy - height * 0.25) / (height * 0.12)) ** 2 <= 1
    image = np.zeros((height, width, 3), np.float32) + (236, 236, 240)
    image[body], image[head] = (40, 70, 150), (200, 150, 120)
    image += np.random.default_rng(0).normal(0, 2.0, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), body | head


def cartoon_picture(width: int = 320, height: int = 240) -> np.ndarray:
    """Flat colours with dark ink outlines: a character in a sky with suns above a fenced lawn."""
    img = np.full((height, width, 3), (120, 200, 250), np.uint8)
    horizon = int(height * 0.75)
    cv2.rectangle(img, (0, horizon), (width, height), (90, 190, 80), -1)
    cv2.line(img, (0, horizon), (width, horizon), INK, 3)
    for i in range(8):
        x = 20 + i * 40
        for y in (25, 60):
            cv2.circle(img, (x + (y // 3) % 20, y), 9, (255, 240, 90), -1)
            cv2.circle(img, (x + (y // 3) % 20, y), 9, INK, 2)
        cv2.rectangle(img, (x - 6, int(height * 0.82)), (x + 6, int(height * 0.95)), (60, 140, 50), -1)
        cv2.rectangle(img, (x - 6, int(height * 0.82)), (x + 6, int(height * 0.95)), INK, 2)
    body = ((width // 2, int(height * 0.6)), (int(width * 0.15), int(height * 0.25)), 0, 0, 360)
    cv2.ellipse(img, *body, (240, 120, 40), -1)
    cv2.ellipse(img, *body, INK, 3)
    cv2.circle(img, (width // 2, int(height * 0.28)), int(height * 0.14), (250, 220, 180), -1)
    cv2.circle(img, (width // 2, int(height * 0.28)), int(height * 0.14), INK, 3)
    return img


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    a, t = alpha > 0.5, truth > 0.5
    return float((a & t).sum() / (a | t).sum())


def stages(result) -> list[tuple[str, bool]]:
    return [(a["stage"], a["accepted"]) for a in result.attempts]


def test_stand_ins_have_the_production_interfaces(stand_ins):
    u2net = ort.InferenceSession(str(stand_ins["u2net"] / U2NET_FILE), providers=["CPUExecutionProvider"])
    (inp,) = u2net.get_inputs()
    assert (inp.name, inp.shape, inp.type) == ("input.1", [1, 3, 320, 320], "tensor(float)")
    outputs = u2net.get_outputs()
    assert outputs[0].name == "1959" and len(outputs) == 7
    assert all(out.shape == [1, 1, 320, 320] for out in outputs)
    maps = u2net.run(None, {"input.1": np.zeros((1, 3, 320, 320), np.float32)})
    assert all(m.min() >= 0.0 and m.max() <= 1.0 for m in maps)  # U2Net's outputs are sigmoid maps

    birefnet = ort.InferenceSession(str(stand_ins["birefnet"] / BIREFNET_FILE), providers=["CPUExecutionProvider"])
    (inp,) = birefnet.get_inputs()
    assert (inp.name, inp.shape) == ("input_image", [1, 3, 1024, 1024])
    assert [out.shape for out in birefnet.get_outputs()] == [[1, 1, 1024, 1024]]
    (logits,) = birefnet.run(None, {"input_image": np.zeros((1, 3, 1024, 1024), np.float32)})
    assert logits.min() < 0.0 < logits.max()  # logits, not probabilities


def test_builds_are_deterministic(stand_ins, tmp_path):
    for build, name, key in ((build_tiny_u2net, U2NET_FILE, "u2net"), (build_tiny_birefnet, BIREFNET_FILE, "birefnet")):
        again = build(tmp_path / key) / name
        digest = hashlib.sha256(again.read_bytes()).hexdigest()
        assert digest == hashlib.sha256((stand_ins[key] / name).read_bytes()).hexdigest()
    assert TINY_U2NET == "tiny-u2net" and TINY_BIREFNET == "tiny-birefnet"


def test_random_stand_ins_are_rejected_as_noise_and_classic_answers(stand_ins):
    image, truth = studio_photo()
    config = SegmentationConfig(birefnet_path=str(stand_ins["birefnet"]), u2net_path=str(stand_ins["u2net"]))
    result = Segmenter.from_config(config).segment(image)
    assert result.stage == "classic"
    assert stages(result) == [("birefnet", False), ("u2net", False), ("classic", True)]
    for attempt in result.attempts[:2]:
        assert attempt["reason"].startswith("noise:")
        assert attempt["coverage"] is not None and attempt["mean"] is not None and attempt["seconds"] > 0
    assert iou(result.alpha, truth) >= 0.9


def test_blob_stand_in_is_accepted_at_birefnet(stand_ins):
    image, _ = studio_photo()
    config = SegmentationConfig(birefnet_path=str(stand_ins["birefnet_blob"]), u2net_path=str(stand_ins["u2net"]))
    result = Segmenter.from_config(config).segment(image)
    assert result.stage == "birefnet" and stages(result) == [("birefnet", True)]
    assert result.alpha.shape == (240, 320) and result.alpha.dtype == np.float32
    assert 0.3 < result.attempts[0]["coverage"] < 0.45  # the stand-in's centred ellipse
    assert result.alpha[120, 160] > 0.99 and result.alpha[5, 5] < 0.01


def test_blob_stand_in_is_accepted_at_u2net_when_birefnet_is_disabled(stand_ins):
    image, _ = studio_photo()
    config = SegmentationConfig(
        enable_birefnet=False, birefnet_path=str(stand_ins["birefnet_blob"]), u2net_path=str(stand_ins["u2net_blob"])
    )
    result = Segmenter.from_config(config).segment(image)
    assert result.stage == "u2net" and stages(result) == [("birefnet", False), ("u2net", True)]
    assert result.attempts[0]["reason"] == "skipped: disabled in the configuration"
    assert result.cartoon is False and "photo firming" in result.attempts[1]["reason"]
    assert ((result.alpha > 0.05) & (result.alpha < 0.95)).mean() < 0.05  # firmed


def test_u2net_stage_detects_a_cartoon_and_firms_it_as_one(stand_ins):
    config = SegmentationConfig(u2net_path=str(stand_ins["u2net_blob"]))
    result = Segmenter.from_config(config).segment(Image.fromarray(cartoon_picture()))
    assert result.stage == "u2net" and result.cartoon is True
    assert result.attempts[0]["reason"] == "skipped: no model path configured"
    assert "cartoon firming" in result.attempts[1]["reason"]


def test_local_profile_serves_classic_masks():
    image, truth = studio_photo()
    result = Segmenter.from_config(SegmentationConfig(enable_birefnet=False, enable_u2net=False)).segment(image)
    assert result.stage == "classic" and stages(result) == [("birefnet", False), ("u2net", False), ("classic", True)]
    assert iou(result.alpha, truth) >= 0.9
    assert result.alpha.min() >= 0.0 and result.alpha.max() <= 1.0


def test_ellipse_is_the_last_resort_for_a_flat_picture():
    flat = Image.new("RGB", (200, 160), (128, 128, 128))
    result = Segmenter(SegmentationConfig()).segment(flat)
    assert result.stage == "ellipse"
    assert stages(result)[-2:] == [("classic", False), ("ellipse", True)]
    assert result.attempts[-2]["reason"].startswith("empty")
    assert result.alpha.shape == (160, 200) and result.alpha[80, 100] == 1.0 and result.alpha[0, 0] == 0.0


def test_judge_names_each_failure():
    config = SegmentationConfig()
    assert judge_mask(np.zeros((50, 50), np.float32), config)[1].startswith("faint")
    assert "full" in judge_mask(np.ones((50, 50), np.float32), config)[1]
    speck = np.zeros((100, 100), np.float32)
    speck[:10, :10] = 1.0  # 1 % of the frame
    accepted, reason, coverage, _ = judge_mask(speck, config)
    assert not accepted and "empty" in reason and coverage == pytest.approx(0.01)
    noise = np.random.default_rng(0).uniform(0.2, 0.8, (50, 50)).astype(np.float32)
    accepted, reason, coverage, _ = judge_mask(noise, config)
    assert not accepted and reason.startswith("noise:") and 0.4 < coverage < 0.6


def test_cartoon_detection():
    assert cartoon_features(cartoon_picture())["cartoon"]
    assert not cartoon_features(np.asarray(gradient_image(320, 240)))["cartoon"]
    rng = np.random.default_rng(0)  # busy texture: many edges, but many colours and no ink
    texture = cv2.resize(rng.random((40, 40, 3)).astype(np.float32), (320, 240), interpolation=cv2.INTER_CUBIC)
    assert not cartoon_features(np.clip(texture * 200 + 30, 0, 255).astype(np.uint8))["cartoon"]


def test_cartoon_firming_keeps_the_outline():
    picture = cartoon_picture()
    soft = np.zeros(picture.shape[:2], np.float32)
    cv2.ellipse(soft, (160, 144), (45, 57), 0, 0, 360, 0.8, -1)  # stops at the ink ring's inner edge
    firm = firm_mask(soft, picture, cartoon=True)
    assert firm[144, 160] == 1.0 and firm[144, 160 + 48] == 1.0  # the outline at radius 48 now belongs
    assert firm[10, 10] == 0.0


def test_missing_model_path_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "birefnet.onnx"
    with pytest.raises(ModelNotFoundError) as err:
        Segmenter.from_config(SegmentationConfig(birefnet_path=str(missing)))
    assert str(missing) in err.value.message and err.value.field == "birefnet_path"
    assert "enable_birefnet: false" in err.value.message
    # A disabled stage is not loaded, so its missing file is no error.
    Segmenter.from_config(SegmentationConfig(birefnet_path=str(missing), enable_birefnet=False))


def test_tiny_model_is_built_into_the_configured_folder(tmp_path, monkeypatch):
    from pipelines.tiny import build as tiny_models
    from pipelines.tiny.provision import provision_tiny_models

    monkeypatch.setitem(tiny_models._BUILDERS, TINY_U2NET, build_tiny_u2net)
    folder = tmp_path / TINY_U2NET
    config = SegmentationConfig(enable_birefnet=False, u2net_path=str(folder), u2net_tiny_model=TINY_U2NET)
    provision_tiny_models(config)
    result = Segmenter.from_config(config).segment(studio_photo()[0])
    assert (folder / U2NET_FILE).is_file() and stages(result)[1] == ("u2net", False)
    with pytest.raises(ValueError, match="folder"):
        SegmentationConfig(u2net_path=str(folder / U2NET_FILE), u2net_tiny_model=TINY_U2NET)


def test_bad_image_is_refused():
    with pytest.raises(InvalidInputError):
        Segmenter(SegmentationConfig()).segment(Image.new("RGB", (4, 4)))


def test_deployment_shim_returns_the_dict_and_the_composed_mask(stand_ins):
    config = SegmentationConfig(birefnet_path=str(stand_ins["birefnet_blob"]))
    deployment = SegmenterDeployment(config)
    image, _ = studio_photo()
    body = asyncio.run(deployment.segment(image))
    assert body["stage"] == "birefnet" and body["alpha"].dtype == np.float32 and body["alpha"].shape == (240, 320)
    assert body["attempts"][0]["accepted"]
    mask = asyncio.run(deployment.mask(image, "left", "person", 0))
    assert mask.stage == "birefnet" and mask.alpha[:, -1].max() == 0.0
    assert deployment.check_health() is None


def test_deployment_module_does_not_import_torch_or_onnxruntime():
    code = "import sys, deployments.segmenter; print('torch' in sys.modules or 'onnxruntime' in sys.modules)"
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo).stdout
    assert out.strip() == "False"
