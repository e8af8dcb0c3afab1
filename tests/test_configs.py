from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from deployments.builder import build_application, ray_options
from deployments.config import AppConfig, load_app_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    names = {path.name for path in CONFIGS}
    assert {"local.yaml", "local-redis.yaml", "production.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_validates(path):
    from ray.serve.schema import ServeDeploySchema

    document = yaml.safe_load(path.read_text())
    ServeDeploySchema.model_validate(document)  # the file `serve run` / KubeRay reads
    for application in document["applications"]:
        assert application["import_path"] == "serve_app:build_app"
        config = load_app_config(application["args"])
        app = build_application(config)  # every Ray option applied, the deployment graph bound
        assert app is not None
        assert ray_options(config.ingress.deployment)["max_ongoing_requests"] >= 1


def test_unknown_keys_are_rejected():
    args = yaml.safe_load((CONFIGS[0].parent / "local.yaml").read_text())["applications"][0]["args"]
    args["video_generator"]["model"]["dtyp"] = "float32"
    with pytest.raises(ValidationError) as raised:
        load_app_config(args)
    assert "dtyp" in str(raised.value)


def test_local_profile_is_cpu_only():
    args = yaml.safe_load((CONFIGS[0].parent / "local.yaml").read_text())["applications"][0]["args"]
    config = load_app_config(args)
    assert config.video_generator.model.device == "cpu"
    assert config.video_generator.deployment.num_gpus == 0
    assert config.ingress.deployment.num_gpus == 0
    assert config.job_store.backend == "sqlite"


def test_production_profile_uses_real_checkpoints_and_a_whole_gpu():
    args = yaml.safe_load((CONFIGS[0].parent / "production.yaml").read_text())["applications"][0]["args"]
    config = load_app_config(args)
    video = config.video_generator
    assert video.deployment.num_gpus == 1.0 and video.deployment.max_ongoing_requests == 1
    assert video.model.tiny_model is None
    assert video.model.quantize_experts == "fp8_dynamic"
    assert video.model.lora is not None
    assert (video.model.lora.scale_high_noise, video.model.lora.scale_low_noise) == (3.0, 1.0)


def test_relative_paths_are_resolved_once(tmp_path):
    config = AppConfig.model_validate({"video_generator": {"model": {"path": "models/wan"}}})
    resolved = config.with_absolute_paths(tmp_path)
    assert resolved.video_generator.model.path == str(tmp_path / "models" / "wan")
    assert resolved.job_store.sqlite_path == str(tmp_path / "var" / "jobs.sqlite3")
    assert Path(resolved.job_store.results_dir).is_absolute()


def test_local_redis_profile_differs_from_local_only_in_the_job_store():
    local = yaml.safe_load((CONFIGS[0].parent / "local.yaml").read_text())["applications"][0]["args"]
    redis = yaml.safe_load((CONFIGS[0].parent / "local-redis.yaml").read_text())["applications"][0]["args"]
    local_config, redis_config = load_app_config(local), load_app_config(redis)
    assert redis_config.job_store.backend == "redis"
    assert redis_config.job_store.redis_url == "redis://127.0.0.1:6379/0"
    for section in ("video_generator", "prompt_expander", "image_analyzer", "segmenter", "background_generator"):
        assert getattr(redis_config, section).model == getattr(local_config, section).model, section


def test_a_pinned_hub_revision_is_a_full_commit_id():
    import pydantic

    from pipelines.edit.config import EditModelConfig

    assert EditModelConfig(path="/models/x", revision="a" * 40).revision == "a" * 40
    with pytest.raises(pydantic.ValidationError):
        EditModelConfig(path="/models/x", revision="1abfb95")  # the Hub does not resolve short ids
