"""Motion LoRAs applied unmerged on the tiny experts: the numbers the issue asks for, at expert level.

Expert outputs stand in for frames here (one forward each, milliseconds); ``test_lora_frames`` checks the
same properties on rendered videos. Tolerance against fusing: float32, max |difference| ≤ 1e-5 on outputs of
magnitude ~1 (measured ~1e-6: the two only differ in the order of the additions).
"""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file

from pipelines.video.config import MotionLoraLibraryConfig, VideoModelConfig
from pipelines.video.loading import load_wan_pipeline, quantize_module
from pipelines.video.lora_adapters import MotionLoras
from pipelines.video.lora_library import LoraUnavailableError
from tests.lora_fixtures import entry, library_copy, tiny_library, write_manifest

FUSE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def pipe(tiny_wan_path):
    return load_wan_pipeline(VideoModelConfig(path=str(tiny_wan_path), device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(0)
    return {
        "hidden_states": torch.randn(1, 36, 3, 8, 8, generator=generator),
        "timestep": torch.tensor([900.0]),
        "encoder_hidden_states": torch.randn(1, 16, 32, generator=generator),
    }


def forward(model, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return model(**inputs, return_dict=False)[0]


def outputs(pipe, inputs) -> dict[str, torch.Tensor]:
    return {"high_noise": forward(pipe.transformer, inputs), "low_noise": forward(pipe.transformer_2, inputs)}


def adapters(pipe, folder=None, max_adapters=4) -> MotionLoras:
    return MotionLoras(pipe, MotionLoraLibraryConfig(path=str(folder or tiny_library()), max_adapters=max_adapters))


def fused(expert, file, scale: float):
    """The reference: diffusers loads the file (converting ComfyUI keys) and fuses it at ``scale``."""
    from diffusers import WanImageToVideoPipeline

    reference = copy.deepcopy(expert)
    state, metadata = WanImageToVideoPipeline.lora_state_dict(str(file), return_lora_metadata=True)
    reference.load_lora_adapter(state, adapter_name="reference", prefix="transformer", metadata=metadata)
    reference.fuse_lora(lora_scale=scale)
    return reference


def test_strength_zero_is_the_base_model_bit_for_bit(pipe, inputs):
    loras = adapters(pipe)
    base = outputs(pipe, inputs)
    with loras.applied([("tiny-orbit", 0.0)]) as switch:
        zero = outputs(pipe, inputs)
    assert switch.hooks == 0
    with loras.applied([("tiny-orbit", 0.05)]):
        small = outputs(pipe, inputs)
    for expert in base:
        assert torch.equal(zero[expert], base[expert])
        assert not torch.allclose(small[expert], base[expert])  # the LoRA does act once strength is above 0


@pytest.mark.parametrize("strength", [0.5, 1.0, 2.0])
def test_strength_s_matches_fusing_at_s_in_the_right_expert(pipe, inputs, strength):
    """tiny-dolly: a ComfyUI file per expert; tiny-orbit: one PEFT file, default strengths 1.0 / 0.75."""
    loras, library = adapters(pipe), tiny_library()
    cases = {
        "tiny-dolly": {"high_noise": ("tiny-dolly_high_noise", 1.0), "low_noise": ("tiny-dolly_low_noise", 1.0)},
        "tiny-orbit": {"high_noise": ("tiny-orbit", 1.0), "low_noise": ("tiny-orbit", 0.75)},
    }
    experts = {"high_noise": pipe.transformer, "low_noise": pipe.transformer_2}
    for lora_id, files in cases.items():
        with loras.applied([(lora_id, strength)]):
            got = outputs(pipe, inputs)
        for expert, (name, default) in files.items():
            reference = forward(fused(experts[expert], library / f"{name}.safetensors", strength * default), inputs)
            difference = (got[expert] - reference).abs().max().item()
            assert difference <= FUSE_TOLERANCE, (lora_id, expert, difference)
    # and the files are not interchangeable: the low-noise file fused into the high-noise expert differs
    with loras.applied([("tiny-dolly", strength)]):
        high = forward(pipe.transformer, inputs)
    swapped = forward(fused(pipe.transformer, library / "tiny-dolly_low_noise.safetensors", strength), inputs)
    assert (high - swapped).abs().max().item() > 100 * FUSE_TOLERANCE


def test_a_then_b_then_a_reproduces_a_exactly_and_leaves_the_base_untouched(pipe, inputs):
    loras = adapters(pipe)
    weights = {name: tensor.clone() for name, tensor in pipe.transformer.state_dict().items()}
    base = outputs(pipe, inputs)
    with loras.applied([("tiny-orbit", 1.0)]):
        first = outputs(pipe, inputs)
    with loras.applied([("tiny-dolly", 1.0)]):
        other = outputs(pipe, inputs)
    with loras.applied([("tiny-orbit", 1.0)]) as switch:
        again = outputs(pipe, inputs)
    after = outputs(pipe, inputs)
    assert switch.reused == ["tiny-orbit"] and switch.loaded == []
    for expert in base:
        assert torch.equal(again[expert], first[expert])
        assert not torch.allclose(other[expert], first[expert])
        assert torch.equal(after[expert], base[expert])  # cleared after each job
    assert all(torch.equal(tensor, weights[name]) for name, tensor in pipe.transformer.state_dict().items())
    assert all(not module._forward_hooks for module in pipe.transformer.modules())


def test_a_file_for_one_expert_changes_only_that_expert(tmp_path, pipe, inputs):
    folder = library_copy(
        tmp_path / "lib",
        [
            entry("high-only", files={"high_noise": "tiny-dolly_high_noise.safetensors"}),
            entry("low-only", files={"low_noise": "tiny-dolly_low_noise.safetensors"}),
        ],
    )
    loras, base = adapters(pipe, folder), outputs(pipe, inputs)
    with loras.applied([("high-only", 1.0)]):
        high = outputs(pipe, inputs)
    with loras.applied([("low-only", 1.0)]):
        low = outputs(pipe, inputs)
    assert not torch.allclose(high["high_noise"], base["high_noise"])
    assert torch.equal(high["low_noise"], base["low_noise"])
    assert torch.equal(low["high_noise"], base["high_noise"])
    assert not torch.allclose(low["low_noise"], base["low_noise"])


def test_at_most_k_adapters_are_held_least_recently_used_evicted(pipe):
    loras = adapters(pipe, max_adapters=1)
    with loras.applied([("tiny-orbit", 1.0)]):
        pass
    assert loras.held() == {"tiny-orbit"}
    # one copy of a file that both experts use, in the experts' dtype (float32 here)
    assert loras.held_bytes() == _lora_bytes(tiny_library() / "tiny-orbit.safetensors")
    with loras.applied([("tiny-dolly", 1.0)]) as switch:
        pass
    assert switch.evicted == ["tiny-orbit"] and loras.held() == {"tiny-dolly"}
    with loras.applied([("tiny-orbit", 1.0)]) as switch:
        pass
    assert switch.loaded == ["tiny-orbit"] and switch.evicted == ["tiny-dolly"]
    with pytest.raises(LoraUnavailableError) as too_many, loras.applied([("tiny-orbit", 1.0), ("tiny-dolly", 1.0)]):
        pass
    assert too_many.value.field == "lora"


def _lora_bytes(path) -> int:
    """float32 bytes of a file's A and B matrices (one copy: a file for both experts is held once)."""
    return sum(t.numel() * 4 for key, t in load_file(str(path)).items() if "lora_" in key)


def test_a_corrupt_file_fails_its_jobs_only(tmp_path, pipe, inputs):
    folder = library_copy(tmp_path / "lib", [entry("nan", file="nan.safetensors")])
    tensors = load_file(str(folder / "tiny-orbit.safetensors"))
    next(iter(tensors.values()))[0, 0] = float("nan")  # passes the header check; only the values are bad
    save_file(tensors, str(folder / "nan.safetensors"))
    loras = adapters(pipe, folder)
    for _ in range(2):  # refused again without being read again
        with pytest.raises(LoraUnavailableError) as refused, loras.applied([("nan", 1.0)]):
            pytest.fail("a NaN LoRA must never be applied")
        assert "NaN" in refused.value.message and refused.value.field == "lora"
    base = outputs(pipe, inputs)
    with loras.applied([("tiny-dolly", 1.0)]):
        assert not torch.allclose(outputs(pipe, inputs)["high_noise"], base["high_noise"])
    assert loras.held() == {"tiny-dolly"}
    assert torch.equal(outputs(pipe, inputs)["high_noise"], base["high_noise"])


def test_a_file_replaced_under_the_same_id_is_read_again(tmp_path, pipe, inputs):
    folder = library_copy(tmp_path / "lib")
    loras = adapters(pipe, folder)
    with loras.applied([("tiny-orbit", 1.0)]):
        before = outputs(pipe, inputs)["high_noise"]
    tensors = {key: value * 0.5 for key, value in load_file(str(folder / "tiny-orbit.safetensors")).items()}
    save_file(tensors, str(folder / "tiny-orbit.safetensors"))  # no PEFT header now: scale 1 instead of 2
    write_manifest(folder, [entry("tiny-orbit", file="tiny-orbit.safetensors")])
    with loras.applied([("tiny-orbit", 1.0)]) as switch:
        after = outputs(pipe, inputs)["high_noise"]
    assert switch.loaded == ["tiny-orbit"] and not torch.allclose(before, after)


@pytest.mark.parametrize("mode", ["int8_weight_only", "fp8_weight_only"])
def test_on_quantised_experts_hooks_match_pefts_torchao_layers(tiny_wan_path, inputs, mode):
    """The modes a CPU can run; fp8_dynamic needs compute capability 8.9 (benchmarks/lora_switch.py on a GPU)."""
    from diffusers import WanImageToVideoPipeline

    pipe = load_wan_pipeline(VideoModelConfig(path=str(tiny_wan_path), device="cpu", dtype="bfloat16"))
    quantize_module(pipe.transformer, mode, torch.device("cpu"))
    inputs = {key: value.to(torch.bfloat16) if value.is_floating_point() else value for key, value in inputs.items()}
    base = forward(pipe.transformer, inputs)
    with adapters(pipe).applied([("tiny-orbit", 1.0)]):
        hooked = forward(pipe.transformer, inputs)
    assert torch.equal(forward(pipe.transformer, inputs), base)  # unhooked: the quantised base, bit for bit
    state, metadata = WanImageToVideoPipeline.lora_state_dict(
        str(tiny_library() / "tiny-orbit.safetensors"), return_lora_metadata=True
    )
    pipe.transformer.load_lora_adapter(state, adapter_name="peft", prefix="transformer", metadata=metadata)
    assert type(pipe.transformer.blocks[0].attn1.to_q).__name__ == "TorchaoLoraLinear"
    assert torch.equal(forward(pipe.transformer, inputs), hooked)
