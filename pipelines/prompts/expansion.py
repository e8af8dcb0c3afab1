"""Prompt expansion: a short user idea -> one cinematic motion description (Qwen2.5-0.5B-Instruct).

The model stays resident in the replica. Sampling is seeded, so the same (prompt, seed) always gives the
same expansion. Every answer is cleaned and checked; an answer that fails the check is replaced by the
original prompt with ``expanded=False`` and the reason, so a bad expansion never reaches the video model.

torch and transformers are imported inside the functions that need them: the config, the result and
``check_expansion`` are imported by the HTTP and deployment layers, which must not pull in torch.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from pipelines.common.config import StrictModel, tiny_model_field
from pipelines.common.errors import InvalidInputError, ModelNotFoundError
from pipelines.common.text import check_text

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You rewrite short video ideas as one cinematic motion description for an image-to-video model. "
    "Describe how the camera moves, what the subject does and the atmosphere of the scene, and keep "
    "what the user asked for. Reply with the description only: a single passage under 50 words, "
    "with no introduction, no quotes and no list."
)
MIN_WORDS = 3
MIN_WORD_SHARE = 0.6
_ECHO_RUN = 5  # this many consecutive system-prompt words in an answer count as an echo


class ExpanderConfig(StrictModel):
    path: str = Field(description="Local folder of a Qwen2.5-Instruct checkpoint (config.json at its root).")
    tiny_model: str | None = tiny_model_field("path")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    max_new_tokens: int = Field(default=100, ge=8, le=512)
    temperature: float = Field(default=0.7, gt=0, le=2.0)
    top_p: float = Field(default=0.9, gt=0, le=1.0)
    repetition_penalty: float = Field(default=1.1, ge=1.0, le=2.0)
    max_words: int = Field(default=50, ge=MIN_WORDS, le=200)
    timeout_s: float = Field(
        default=10.0, gt=0, description="Callers give up after this long; generation itself stops at it too."
    )


@dataclass(frozen=True)
class ExpansionResult:
    prompt: str  # what to render with: the expansion, or the original when expanded is False
    original: str
    expanded: bool
    reason: str | None  # why the original was kept; None when expanded
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def validate_prompt(prompt: object) -> str:
    """The prompt to expand, stripped; it must hold some text."""
    if not isinstance(prompt, str):
        raise InvalidInputError("prompt must be a non-empty string", field="prompt")
    return check_text(prompt, "prompt", required=True).strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+(?:['’-][^\W_]+)*", text.lower())


_WORDLIKE = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_EDGE_PUNCT = "\"'“”‘’`()[]{}.,;:!?…*-–—"


def check_expansion(text: str, original: str, system_prompt: str = SYSTEM_PROMPT) -> str | None:
    """Return why ``text`` is not a usable expansion of ``original``, or None if it is."""
    if not text or not text.strip():
        return "empty"
    # U+FFFD is what a byte-level decoder emits for a cut-off UTF-8 sequence: printable, but garbage.
    if any(ch == "\ufffd" or not (ch.isprintable() or ch.isspace()) for ch in text):
        return "not_printable"
    tokens = text.split()
    if len(tokens) < MIN_WORDS:
        return "too_short"
    wordlike = sum(1 for token in tokens if _WORDLIKE.fullmatch(token.strip(_EDGE_PUNCT)))
    if wordlike / len(tokens) < MIN_WORD_SHARE:
        return "mostly_non_words"
    words, system_words = _words(text), _words(system_prompt)
    run = min(_ECHO_RUN, len(words))
    system_runs = {tuple(system_words[i : i + run]) for i in range(len(system_words) - run + 1)}
    if any(tuple(words[i : i + run]) in system_runs for i in range(len(words) - run + 1)):
        return "echoes_system_prompt"
    if words == _words(original):
        return "same_as_original"
    return None


# Chat models like to open with "Sure! Here is the description:" or label the answer "Prompt:".
_OPENING = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|okay|ok|absolutely)\b[^\w\n]*)?(?:(?:here(?:'s| is)|below is)\b[^:\n]*:)?\s*",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^[\w ]{0,30}?\b(?:prompt|description)\s*:\s*", re.IGNORECASE)


def clean_expansion(text: str, max_words: int) -> str:
    """Drop a chatty opening or a 'Prompt:' label, flatten whitespace, unquote, keep ``max_words`` words."""
    text = _LABEL.sub("", _OPENING.sub("", text, count=1), count=1)
    text = " ".join(text.split()).strip("\"'“”‘’` ")
    words = text.split()
    if len(words) > max_words:
        text = " ".join(words[:max_words]).rstrip(",;:–—-")
    return text


class PromptExpander:
    """One resident model and tokenizer; ``expand`` is thread-safe (calls take turns)."""

    def __init__(self, model, tokenizer, config: ExpanderConfig, system_prompt: str = SYSTEM_PROMPT) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.system_prompt = system_prompt
        # The sampler draws from torch's global generator; seeding it per call is only reproducible if
        # no other call samples in between.
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: ExpanderConfig) -> PromptExpander:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from pipelines.common.devices import DTYPES, resolve_device

        path = _checkpoint_folder(config)
        device = resolve_device(config.device)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if not tokenizer.chat_template:
            raise ModelNotFoundError(f"the tokenizer in {path} has no chat template; use an Instruct checkpoint")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[config.dtype], local_files_only=True)
        return cls(model.to(device).eval(), tokenizer, config)

    def expand(self, prompt: str, seed: int = 0) -> ExpansionResult:
        original = validate_prompt(prompt)
        started = time.perf_counter()
        raw = self._generate(original, seed)
        text = clean_expansion(raw, self.config.max_words)
        reason = check_expansion(text, original, self.system_prompt)
        seconds = round(time.perf_counter() - started, 4)
        if reason is not None:
            log.info("prompt expansion rejected (%s); keeping the original prompt", reason)
            return ExpansionResult(original, original, False, reason, seconds)
        return ExpansionResult(text, original, True, None, seconds)

    def _generate(self, prompt: str, seed: int) -> str:
        import torch

        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": prompt}]
        device = self.model.device
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        ).to(device)
        tokenizer = self.tokenizer
        # An Instruct answer ends at <|im_end|>; a base-style checkpoint may end at its own eos instead.
        candidates = (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"))
        stop_ids = sorted({i for i in candidates if i is not None})
        with self._lock, torch.inference_mode():
            # fork_rng restores the global generator afterwards, so seeding here disturbs no other code.
            cuda_devices = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda_devices):
                torch.manual_seed(seed)
                output = self.model.generate(
                    **inputs,
                    do_sample=True,
                    max_new_tokens=self.config.max_new_tokens,
                    temperature=self.config.temperature,
                    top_p=self.config.top_p,
                    repetition_penalty=self.config.repetition_penalty,
                    eos_token_id=stop_ids,
                    pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0],
                    # The caller stops waiting at timeout_s; stop the work too instead of holding the GPU.
                    max_time=self.config.timeout_s,
                )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return tokenizer.decode(new_tokens, skip_special_tokens=True)


def _checkpoint_folder(config: ExpanderConfig) -> Path:
    path = Path(config.path)
    if not (path / "config.json").exists():
        raise ModelNotFoundError(
            f"no checkpoint at {path} (looked for config.json); populate it ahead of time, for example "
            f"`hf download Qwen/Qwen2.5-0.5B-Instruct --local-dir {path}`, or fix `path` in the config"
        )
    return path
