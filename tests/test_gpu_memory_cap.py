"""Each GPU replica caps its own CUDA memory to its share: the config, the function, the shims' call.

No GPU here: torch.cuda is replaced by a recorder for the capped cases; on the real CPU-only torch the cap
is a no-op.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from deployments.config import DeploymentOptions, load_app_config
from pipelines.common import devices

PRODUCTION = Path(__file__).resolve().parents[1] / "configs" / "production.yaml"
GPU_DEPLOYMENTS = ("video_generator", "prompt_expander", "image_analyzer", "segmenter", "background_generator")


def production_args() -> dict:
    return yaml.safe_load(PRODUCTION.read_text())["applications"][0]["args"]


class FakeCuda:
    def __init__(self, count: int) -> None:
        self.count = count
        self.calls: list[tuple[float, int]] = []

    def install(self, monkeypatch) -> FakeCuda:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.count)
        monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: self.calls.append((f, d)))
        return self


def test_the_cap_is_applied_to_every_visible_gpu(monkeypatch):
    cuda = FakeCuda(count=2).install(monkeypatch)
    assert devices.cap_process_gpu_memory(0.2) == 0.2
    assert cuda.calls == [(0.2, 0), (0.2, 1)]


def test_no_fraction_means_no_cap(monkeypatch):
    cuda = FakeCuda(count=1).install(monkeypatch)
    assert devices.cap_process_gpu_memory(None) is None and cuda.calls == []


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_a_fraction_outside_zero_to_one_is_refused(monkeypatch, fraction):
    FakeCuda(count=1).install(monkeypatch)
    with pytest.raises(ValueError, match="fraction"):
        devices.cap_process_gpu_memory(fraction)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_without_a_gpu_the_cap_is_a_no_op():
    assert devices.cap_process_gpu_memory(0.5) is None


def test_the_default_cap_is_the_gpu_share_and_an_explicit_one_must_fit_in_it():
    assert DeploymentOptions(num_gpus=0.2).cuda_memory_fraction == 0.2
    assert DeploymentOptions(num_gpus=2).cuda_memory_fraction == 1.0
    assert DeploymentOptions(num_gpus=0).cuda_memory_fraction is None
    assert DeploymentOptions(num_gpus=0.5, gpu_memory_fraction=0.4).cuda_memory_fraction == 0.4
    with pytest.raises(ValueError, match="more than this replica's GPU share"):
        DeploymentOptions(num_gpus=0.2, gpu_memory_fraction=0.3)
    with pytest.raises(ValueError, match="needs num_gpus > 0"):
        DeploymentOptions(num_gpus=0, gpu_memory_fraction=0.3)


def test_production_caps_each_gpu_replica_to_the_share_design_gives_it():
    config = load_app_config(production_args())
    caps = {name: getattr(config, name).deployment.cuda_memory_fraction for name in GPU_DEPLOYMENTS}
    # DESIGN §2: 1.0, 0.2, 0.1, 0.2, 0.5; the GPUs a node's replicas share add up to at most one GPU
    assert caps == {
        "video_generator": 1.0,
        "prompt_expander": 0.2,
        "image_analyzer": 0.1,
        "segmenter": 0.2,
        "background_generator": 0.5,
    }
    assert config.ingress.deployment.cuda_memory_fraction is None


def test_the_shims_cap_before_they_load(monkeypatch, tmp_path):
    """Each shim that loads its own model calls the cap first, with its configured fraction."""
    from deployments.image_analyzer import ImageAnalyzerDeployment
    from deployments.prompt_expander import PromptExpanderDeployment
    from deployments.segmenter import SegmenterDeployment

    order: list[str] = []
    monkeypatch.setattr(devices, "cap_process_gpu_memory", lambda fraction: order.append(f"cap {fraction}"))

    def loader(name):
        def from_config(cls, config):
            order.append(f"load {name}")
            return object()

        return classmethod(from_config)

    import pipelines.background.clip_analysis as clip
    import pipelines.background.segmentation.chain as chain
    import pipelines.prompts.expansion as expansion
    import pipelines.tiny.provision as provision

    monkeypatch.setattr(provision, "provision_tiny_models", lambda config: None)
    monkeypatch.setattr(clip.ImageAnalyzer, "from_config", loader("analyzer"))
    monkeypatch.setattr(chain.Segmenter, "from_config", loader("segmenter"))
    monkeypatch.setattr(expansion.PromptExpander, "from_config", loader("expander"))

    ImageAnalyzerDeployment(clip.AnalyzerConfig(checkpoint=str(tmp_path)), gpu_memory_fraction=0.1)
    SegmenterDeployment(chain.SegmentationConfig(), gpu_memory_fraction=0.2)
    PromptExpanderDeployment(expansion.ExpanderConfig(path=str(tmp_path)), gpu_memory_fraction=None)
    assert order == ["cap 0.1", "load analyzer", "cap 0.2", "load segmenter", "cap None", "load expander"]


def test_the_builder_hands_each_model_shim_its_cap(monkeypatch):
    pytest.importorskip("ray")
    from deployments import builder

    bound: dict[str, dict] = {}

    class Recorder:
        def __init__(self, name):
            self.name = name

        def bind(self, *args, **kwargs):
            bound[self.name] = kwargs
            return self.name

    monkeypatch.setattr(builder, "_deployment", lambda cls, name, options, **queue: Recorder(name))
    builder.build_application(load_app_config(production_args()))
    fractions = {
        name: bound[name].get("gpu_memory_fraction") for name in ("PromptExpander", "ImageAnalyzer", "Segmenter")
    }
    assert fractions == {"PromptExpander": 0.2, "ImageAnalyzer": 0.1, "Segmenter": 0.2}
