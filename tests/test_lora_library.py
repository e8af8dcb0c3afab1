"""The motion LoRA library: manifest, file checks (no torch needed), statuses, reload, and key layouts that
read the way diffusers 0.42 converts them."""

from __future__ import annotations

import math
import os

import pytest
import torch
import yaml
from safetensors.torch import save_file

from pipelines.common.errors import InvalidInputError
from pipelines.video.config import MotionLoraLibraryConfig, VideoModelConfig
from pipelines.video.lora_files import read_layout
from pipelines.video.lora_library import LoraCatalog, LoraUnavailableError, expert_layer_tables, load_library
from tests.lora_fixtures import entry, library_copy, tiny_library, write_manifest


@pytest.fixture(scope="module")
def layers(tiny_wan_path):
    tables = expert_layer_tables(VideoModelConfig(path=str(tiny_wan_path)))
    assert tables is not None and set(tables) == {"high_noise", "low_noise"}
    return tables


def _library(folder, layers):
    return load_library(MotionLoraLibraryConfig(path=str(folder)), layers)


def test_the_shipped_tiny_library_has_two_ready_loras_in_both_layouts(layers):
    library = _library(tiny_library(), layers)
    assert library.error is None and library.checked_shapes
    orbit, dolly = library.entries["tiny-orbit"], library.entries["tiny-dolly"]
    assert (orbit.status, dolly.status) == ("ready", "ready")
    assert {e: layout.layout for e, layout in orbit.layouts.items()} == {
        "high_noise": "diffusers",
        "low_noise": "diffusers",
    }
    assert {e: layout.layout for e, layout in dolly.layouts.items()} == {
        "high_noise": "comfyui",
        "low_noise": "comfyui",
    }
    assert orbit.files["high_noise"] == orbit.files["low_noise"]  # one file for both experts
    assert dolly.files["high_noise"] != dolly.files["low_noise"]
    assert orbit.layouts["high_noise"].scale == 2.0  # lora_alpha 8 / r 4 from the PEFT header
    assert orbit.public()["default_strength"] == {"high_noise": 1.0, "low_noise": 0.75}
    assert dolly.public()["trigger_words"] == ["dolly zoom", "push"]


@pytest.mark.parametrize("name", ["tiny-orbit.safetensors", "tiny-dolly_high_noise.safetensors"])
def test_the_layouts_read_like_diffusers_converts_them(name):
    """Same modules, same effective update B·A·scale as diffusers' own loader (incl. the ComfyUI conversion)."""
    from diffusers import WanImageToVideoPipeline
    from safetensors import safe_open

    path = tiny_library() / name
    converted, metadata = WanImageToVideoPipeline.lora_state_dict(str(path), return_lora_metadata=True)
    layout = read_layout(path)
    theirs = {key.removeprefix("transformer.").rsplit(".lora_", 1)[0] for key in converted}
    assert theirs == set(layout.modules)
    peft_scale = metadata["transformer.lora_alpha"] / metadata["transformer.r"] if metadata else 1.0
    with safe_open(str(path), framework="pt") as handle:
        for module, info in layout.modules.items():
            down, up = handle.get_tensor(info.down.key), handle.get_tensor(info.up.key)
            scale = layout.scale * (handle.get_tensor(info.alpha.key).item() / info.rank if info.alpha else 1.0)
            ours = scale * up @ down
            a = converted[f"transformer.{module}.lora_A.weight"]
            b = converted[f"transformer.{module}.lora_B.weight"]
            torch.testing.assert_close(ours, peft_scale * b @ a, rtol=1e-6, atol=1e-7)
            if info.bias is not None:
                assert torch.equal(handle.get_tensor(info.bias.key), converted[f"transformer.{module}.lora_B.bias"])


def _bad_files(folder):
    """Files that must each be refused, with words their reason must contain."""
    torch.save({"x": torch.zeros(2)}, folder / "pickled.pt")
    (folder / "pickled.safetensors").write_bytes((folder / "pickled.pt").read_bytes())
    good = (folder / "tiny-dolly_high_noise.safetensors").read_bytes()
    (folder / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    save_file(  # a LoRA for a wider model: 64 inputs where the tiny experts' attention has 32
        {
            "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(2, 64),
            "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(64, 2),
        },
        str(folder / "wider.safetensors"),
    )
    save_file({"transformer.blocks.0.attn1.to_q.weight": torch.zeros(32, 32)}, str(folder / "full.safetensors"))
    save_file(
        {
            "transformer.blocks.7.attn1.to_q.lora_A.weight": torch.zeros(2, 32),
            "transformer.blocks.7.attn1.to_q.lora_B.weight": torch.zeros(32, 2),
        },
        str(folder / "deeper.safetensors"),
    )
    return {
        "pickle-file": ("pickled.pt", "only safetensors"),
        "pickle-renamed": ("pickled.safetensors", "not a valid safetensors"),
        "truncated": ("truncated.safetensors", "truncated or corrupt"),
        "wider": ("wider.safetensors", "32->32"),
        "not-lora": ("full.safetensors", "not a LoRA key"),
        "deeper": ("deeper.safetensors", "not a linear layer of the high-noise expert"),
        "missing": ("absent.safetensors", "does not exist"),
    }


def test_every_bad_file_is_unavailable_with_its_reason_and_the_rest_stay_ready(tmp_path, layers):
    folder = library_copy(tmp_path / "lib")
    bad = _bad_files(folder)
    extra = [entry(lora_id, file=name) for lora_id, (name, _) in bad.items()]
    extra += [
        entry("escapes", file="../outside.safetensors"),
        entry("too-strong", file="tiny-orbit.safetensors", default_strength=3.0),
        entry("both-ways", file="tiny-orbit.safetensors", files={"high_noise": "tiny-orbit.safetensors"}),
        entry("tiny-orbit", file="truncated.safetensors"),  # a duplicate id: the first entry wins
        {"name": "no id at all", "file": "tiny-orbit.safetensors"},
    ]
    manifest = yaml.safe_load((tiny_library() / "manifest.yaml").read_text())["loras"]
    write_manifest(folder, manifest + extra)
    library = _library(folder, layers)
    for lora_id, (_, words) in bad.items():
        found = library.entries[lora_id]
        assert found.status == "unavailable", lora_id
        assert words in found.reason, (lora_id, found.reason)
    for lora_id, words in (("escapes", "inside the library folder"), ("too-strong", "between 0.0 and 2.0")):
        assert library.entries[lora_id].status == "unavailable" and words in library.entries[lora_id].reason
    assert library.entries["both-ways"].status == "unavailable"
    assert library.entries["tiny-orbit"].status == "ready"
    assert library.entries["tiny-dolly"].status == "ready"
    assert len(library.entries) == 2 + len(bad) + 3


def test_shapes_are_checked_only_once_the_experts_are_known(tmp_path, layers):
    folder = library_copy(tmp_path / "lib")
    bad = _bad_files(folder)
    write_manifest(folder, [entry("wider", file=bad["wider"][0])])
    assert _library(folder, None).entries["wider"].status == "ready"  # layout alone is fine
    assert _library(folder, layers).entries["wider"].status == "unavailable"


def test_an_unreadable_manifest_lists_nothing_and_says_why(tmp_path, layers):
    folder = tmp_path / "lib"
    folder.mkdir()
    assert "no manifest" in _library(folder, layers).error
    (folder / "manifest.yaml").write_text("loras: [unclosed")
    library = _library(folder, layers)
    assert library.entries == {} and "cannot be read" in library.error


def test_the_catalog_sees_a_changed_manifest_and_reload_forces_a_read(tmp_path, layers):
    folder = library_copy(tmp_path / "lib")
    catalog = LoraCatalog(MotionLoraLibraryConfig(path=str(folder)), lambda: layers)
    first = catalog.current()
    assert catalog.current() is first  # nothing changed: the same snapshot, no re-read
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())["loras"]
    write_manifest(folder, [*manifest, entry("orbit-again", file="tiny-orbit.safetensors")])
    os.utime(folder / "manifest.yaml", ns=(1, 1))  # a new modification time, however fast the test runs
    assert "orbit-again" in catalog.current().entries
    assert catalog.reload() is not first


def test_resolve_names_the_field_for_each_bad_request(tmp_path, layers):
    folder = library_copy(tmp_path / "lib", [entry("broken", file="absent.safetensors")])
    library = _library(folder, layers)
    assert library.resolve("tiny-orbit", 2.0) == {"high_noise": 2.0, "low_noise": 1.5}
    assert library.resolve("tiny-dolly", 0.0) == {"high_noise": 0.0, "low_noise": 0.0}
    with pytest.raises(InvalidInputError) as unknown:
        library.resolve("nope", 1.0)
    assert unknown.value.field == "lora" and "tiny-orbit" in unknown.value.message
    with pytest.raises(LoraUnavailableError) as unavailable:
        library.resolve("broken", 1.0)
    assert unavailable.value.field == "lora" and unavailable.value.kind == "lora_unavailable"
    for strength in (math.nan, -0.1, 2.01, math.inf, True):
        with pytest.raises(InvalidInputError) as bad:
            library.resolve("tiny-orbit", strength)
        assert bad.value.field == "lora_strength"
