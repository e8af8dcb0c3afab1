"""Prompt expansion: the tiny Qwen folder, seeded expansion, the output check and every fallback."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.prompt_expander import PromptExpanderDeployment, expand_or_fallback
from pipelines.common.errors import InvalidInputError, ModelNotFoundError
from pipelines.prompts.expansion import (
    SYSTEM_PROMPT,
    ExpanderConfig,
    PromptExpander,
    check_expansion,
    clean_expansion,
)
from pipelines.tiny.qwen import BUILD_MARKER, TINY_QWEN, build_tiny_qwen

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["a woman smiling on a beach", "a red sports car in the rain", "a cat asleep on a windowsill"]
GOOD = "The camera slowly pushes in as a soft breeze lifts her hair and warm light glows across the sand."


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    """Built through the config's `tiny_model` path (temp folder, then rename), like a fresh replica."""
    return tmp_path_factory.mktemp("models") / TINY_QWEN


@pytest.fixture(scope="module")
def config(qwen_dir: Path) -> ExpanderConfig:
    from pipelines.tiny.provision import provision_tiny_models

    config = ExpanderConfig(path=str(qwen_dir), tiny_model=TINY_QWEN, device="cpu", dtype="float32")
    provision_tiny_models(config)
    return config


@pytest.fixture(scope="module")
def deployment(config: ExpanderConfig) -> PromptExpanderDeployment:
    return PromptExpanderDeployment(config)


@pytest.fixture(scope="module")
def expander(deployment: PromptExpanderDeployment) -> PromptExpander:
    return deployment.expander


# --- the tiny checkpoint ---------------------------------------------------------------------------


def test_tiny_qwen_folder_has_the_real_layout_and_loads(expander: PromptExpander, qwen_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", BUILD_MARKER):
        assert (qwen_dir / name).is_file(), name
    assert not list(qwen_dir.parent.glob(f".{TINY_QWEN}-*")), "the staging folder must be renamed away"
    model = AutoModelForCausalLM.from_pretrained(qwen_dir)
    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a cat"}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\na cat<|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\n")
    ids = tokenizer(text)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3  # special tokens stay whole
    assert tokenizer.decode(tokenizer("Wörld, café 😀")["input_ids"]) == "Wörld, café 😀"  # byte-level: lossless


def test_tiny_qwen_build_is_deterministic(qwen_dir: Path, expander: PromptExpander, tmp_path: Path) -> None:
    again = build_tiny_qwen(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json"):
        assert (again / name).read_bytes() == (qwen_dir / name).read_bytes(), name


def test_config_defaults_follow_the_reference_and_reject_typos() -> None:
    config = ExpanderConfig(path="x")
    assert (config.max_new_tokens, config.temperature, config.top_p) == (100, 0.7, 0.9)
    assert (config.repetition_penalty, config.max_words) == (1.1, 50)
    with pytest.raises(ValueError):
        ExpanderConfig(path="x", temprature=0.5)


def test_missing_checkpoint_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        PromptExpander.from_config(ExpanderConfig(path=str(tmp_path / "nowhere"), device="cpu"))


# --- expansion with the tiny model -----------------------------------------------------------------


def test_same_prompt_and_seed_give_the_same_expansion(expander: PromptExpander) -> None:
    # Compare the sampled text itself: after a failed check both results would equal the original anyway.
    raw = [expander._generate(PROMPTS[0], seed) for seed in (7, 7, 8)]
    assert raw[0] and raw[0] == raw[1]
    assert isinstance(raw[2], str)  # another seed may or may not differ; it must simply work
    # Cleaning and checking are pure, so equal samples give equal results.
    assert clean_expansion(raw[0], 50) == clean_expansion(raw[1], 50)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_result_honours_the_contract_either_way(expander: PromptExpander, prompt: str) -> None:
    for seed in (0, 1):
        result = expander.expand(prompt, seed=seed)
        assert result.original == prompt
        assert len(result.prompt.split()) <= 50
        if result.expanded:
            assert result.reason is None
            assert check_expansion(result.prompt, prompt, SYSTEM_PROMPT) is None
        else:
            assert result.prompt == prompt and result.reason
        assert set(result.to_dict()) == {"prompt", "original", "expanded", "reason", "seconds"}


class _ScriptedModel:
    """Stands in for the network only: answers every prompt with fixed text, through the real tokenizer."""

    def __init__(self, tokenizer, answer: str) -> None:
        import torch

        self.device = torch.device("cpu")
        self.answer = tokenizer(answer, return_tensors="pt")["input_ids"]
        self.kwargs: dict = {}

    def generate(self, input_ids, **kwargs):
        import torch

        self.kwargs = kwargs
        return torch.cat([input_ids, self.answer], dim=1)


def test_good_answer_is_cleaned_capped_and_accepted(expander: PromptExpander, config: ExpanderConfig) -> None:
    answer = 'Sure! Here is the description: "' + " ".join([GOOD] * 4) + '"<|im_end|>'
    model = _ScriptedModel(expander.tokenizer, answer)
    scripted = PromptExpander(model, expander.tokenizer, config)
    result = scripted.expand("  a woman on a beach  ", seed=3)
    assert result.expanded and result.reason is None
    assert result.original == "a woman on a beach"
    assert result.prompt.startswith("The camera slowly pushes in") and len(result.prompt.split()) == 50
    assert model.kwargs["do_sample"] and model.kwargs["max_new_tokens"] == 100
    assert (model.kwargs["temperature"], model.kwargs["top_p"], model.kwargs["repetition_penalty"]) == (0.7, 0.9, 1.1)


def test_echoed_system_prompt_falls_back(expander: PromptExpander, config: ExpanderConfig) -> None:
    scripted = PromptExpander(_ScriptedModel(expander.tokenizer, SYSTEM_PROMPT), expander.tokenizer, config)
    result = scripted.expand("a dog", seed=0)
    assert (result.prompt, result.expanded, result.reason) == ("a dog", False, "echoes_system_prompt")


@pytest.mark.parametrize("prompt", ["", "   ", "x" * 2001, None])
def test_invalid_prompt_is_refused(expander: PromptExpander, prompt) -> None:
    with pytest.raises(InvalidInputError) as caught:
        expander.expand(prompt, seed=0)
    assert caught.value.field == "prompt"


# --- the output check -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("camera pans\x07 slowly over the sea", "not_printable"),
        ("camera pans \ufffd slowly over the sea", "not_printable"),
        ("slow pan", "too_short"),
        ("x7 ## 42 ?? q9 slow pan", "mostly_non_words"),
        ("Describe how the camera moves, what the subject does", "echoes_system_prompt"),
        ("A  Woman smiling on a BEACH.", "same_as_original"),
        (GOOD, None),
        ("Handheld close-up: she's laughing, 1990s film grain, wind in the palms.", None),
    ],
)
def test_check_expansion_reasons(text: str, reason: str | None) -> None:
    assert check_expansion(text, "a woman smiling on a beach", SYSTEM_PROMPT) == reason


def test_clean_expansion_strips_preamble_quotes_and_caps() -> None:
    assert clean_expansion("Expanded prompt:\n\n  “Slow   pan\tacross the bay.”", 50) == "Slow pan across the bay."
    assert clean_expansion("Certainly! Here's a cinematic version:\n'Rain falls.'", 50) == "Rain falls."
    assert clean_expansion("one two three, four five", 3) == "one two three"
    assert clean_expansion("The camera orbits slowly.", 50) == "The camera orbits slowly."


# --- the deployment and the ingress fallback --------------------------------------------------------


def test_deployment_answers_a_dict(deployment: PromptExpanderDeployment) -> None:
    answer = asyncio.run(deployment.expand(PROMPTS[1], 5))
    assert answer["original"] == PROMPTS[1] and isinstance(answer["expanded"], bool)
    assert answer == {**asyncio.run(deployment.expand(PROMPTS[1], 5)), "seconds": answer["seconds"]}
    deployment.check_health()


def _fallback(call, timeout_s: float = 1.0) -> dict:
    return asyncio.run(expand_or_fallback(call, "a dog", 3, timeout_s))


def test_fallback_on_timeout() -> None:
    async def slow(prompt: str, seed: int) -> dict:
        await asyncio.sleep(5)
        return {}

    answer = _fallback(slow, timeout_s=0.05)
    assert answer["seconds"] < 2
    assert {k: answer[k] for k in ("prompt", "original", "expanded", "reason")} == {
        "prompt": "a dog",
        "original": "a dog",
        "expanded": False,
        "reason": "timeout",
    }


def test_fallback_when_the_deployment_is_down() -> None:
    async def down(prompt: str, seed: int) -> dict:
        raise RuntimeError("replica died\nTraceback: ...")

    def refuses(prompt: str, seed: int):  # fails before it even returns an awaitable
        raise ConnectionError("no replicas")

    for call in (down, refuses):
        answer = _fallback(call)
        assert (answer["prompt"], answer["expanded"], answer["reason"]) == ("a dog", False, "unavailable")


def test_fallback_when_disabled_and_passthrough_on_success() -> None:
    assert _fallback(None)["reason"] == "disabled"
    expanded = {"prompt": GOOD, "original": "a dog", "expanded": True, "reason": None, "seconds": 0.1}

    async def works(prompt: str, seed: int) -> dict:
        assert (prompt, seed) == ("a dog", 3)
        return expanded

    assert _fallback(works) == expanded


def test_invalid_prompt_error_is_not_hidden_by_the_fallback() -> None:
    async def refuses(prompt: str, seed: int) -> dict:
        raise InvalidInputError("prompt must be a non-empty string", field="prompt")

    with pytest.raises(InvalidInputError):
        _fallback(refuses)


def test_ingress_side_imports_stay_free_of_torch() -> None:
    code = "import sys, deployments.prompt_expander, pipelines.prompts.expansion; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
