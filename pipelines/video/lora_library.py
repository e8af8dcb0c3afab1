"""The motion LoRA library: a read-only folder with a manifest, and each entry's status (no torch).

Adding a LoRA is a file (or one per expert) plus a manifest entry::

    loras:
      - id: orbit-left                  # [a-z0-9._-], what `lora` on a video job names
        name: Orbit left
        description: The camera circles the subject to the left.
        license: apache-2.0
        trigger_words: [orbit]
        files: {high_noise: orbit_high.safetensors, low_noise: orbit_low.safetensors}
        # or  file: orbit.safetensors   (one file loaded into both experts)
        default_strength: {high_noise: 1.0, low_noise: 0.8}   # or one number for both

Every entry is checked without torch (see ``lora_files``): paths inside the folder, safetensors only, LoRA
keys in a known layout, shapes that chain and, when the experts' checkpoint can be read, that fit the experts'
linear layers. An entry that fails is listed ``unavailable`` with the reason; the others stay usable. The
service never writes the folder; :class:`LoraCatalog` notices a changed manifest or file by its size and
modification time and reads the library again (``POST /v1/loras/reload`` forces it).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pipelines.common.config import StrictModel
from pipelines.common.errors import InvalidInputError
from pipelines.video.config import MotionLoraLibraryConfig, VideoModelConfig
from pipelines.video.lora_files import LoraFileError, LoraLayout, check_against_layers, expert_layer_shapes, read_layout

log = logging.getLogger(__name__)

Expert = Literal["high_noise", "low_noise"]
EXPERT_NAMES: tuple[Expert, ...] = ("high_noise", "low_noise")
# The pipeline's attribute holding each expert (diffusers' WanImageToVideoPipeline).
EXPERT_MODULES = {"high_noise": "transformer", "low_noise": "transformer_2"}
MIN_STRENGTH, MAX_STRENGTH, DEFAULT_STRENGTH = 0.0, 2.0, 1.0
LORA_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"

LayerTables = dict[str, dict[str, tuple[int, int]]]  # expert -> {module: (out, in)}


class LoraUnavailableError(InvalidInputError):
    """The job names a LoRA the library lists as unavailable (or that stopped fitting since it was queued)."""

    kind = "lora_unavailable"


class ManifestEntry(StrictModel):
    id: str = Field(pattern=LORA_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    license: str = Field(default="unknown", max_length=200)
    trigger_words: list[str] = Field(default_factory=list, max_length=20)
    file: str | None = None
    files: dict[Expert, str] | None = None
    default_strength: float | dict[Expert, float] = 1.0

    @field_validator("file", "files")
    @classmethod
    def _inside_the_folder(cls, value):
        for name in [value] if isinstance(value, str) else (value or {}).values():
            path = Path(name)
            if path.is_absolute() or ".." in path.parts:
                raise ValueError(f"{name!r} must be a path inside the library folder")
        return value

    @model_validator(mode="after")
    def _one_way_to_name_files(self) -> ManifestEntry:
        if (self.file is None) == (not self.files):
            raise ValueError("give either `file` (one file for both experts) or `files` (per expert), not both")
        for value in self.strengths.values():
            if not math.isfinite(value) or not MIN_STRENGTH <= value <= MAX_STRENGTH:
                raise ValueError(f"default_strength must be between {MIN_STRENGTH} and {MAX_STRENGTH}")
        return self

    @property
    def expert_files(self) -> dict[Expert, str]:
        return dict(self.files) if self.files else dict.fromkeys(EXPERT_NAMES, self.file)

    @property
    def strengths(self) -> dict[Expert, float]:
        if isinstance(self.default_strength, dict):
            return {expert: float(self.default_strength.get(expert, 1.0)) for expert in EXPERT_NAMES}
        return dict.fromkeys(EXPERT_NAMES, float(self.default_strength))


@dataclass(frozen=True)
class LoraEntry:
    """One LoRA of the library as this process sees it: its manifest fields, files and status."""

    id: str
    name: str
    description: str
    license: str
    trigger_words: tuple[str, ...]
    default_strength: dict[Expert, float]
    files: dict[Expert, Path]  # only the experts the LoRA has a file for
    status: Literal["ready", "unavailable"]
    reason: str | None = None
    layouts: dict[Expert, LoraLayout] = field(default_factory=dict, repr=False, compare=False)
    signature: tuple = ()  # (path, size, mtime_ns) of each file: a changed file is a new adapter

    def public(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "license": self.license,
            "trigger_words": list(self.trigger_words),
            "experts": [expert for expert in EXPERT_NAMES if expert in self.files],
            "default_strength": dict(self.default_strength),
            "status": self.status,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class LoraLibrary:
    """An immutable snapshot of the library; ``error`` is set when the manifest itself could not be read."""

    entries: dict[str, LoraEntry]
    signature: tuple
    checked_shapes: bool  # False: the experts' layers were unknown, so only the files' own layout was checked
    error: str | None = None

    def resolve(self, lora_id: str, strength: float, *, field_name: str = "lora") -> dict[Expert, float]:
        """The per-expert scales of ``lora_id`` at ``strength`` (a multiplier of its default strengths)."""
        entry = self.entries.get(lora_id)
        if entry is None:
            known = ", ".join(sorted(self.entries)) or "none: the library is empty"
            raise InvalidInputError(f"unknown LoRA {lora_id!r}; the library has {known}", field=field_name)
        if entry.status != "ready":
            raise LoraUnavailableError(f"LoRA {lora_id!r} is unavailable: {entry.reason}", field=field_name)
        check_strength(strength)
        return {expert: strength * entry.default_strength[expert] for expert in entry.files}


def check_strength(strength: object, field_name: str = "lora_strength") -> float:
    if (
        isinstance(strength, bool)
        or not isinstance(strength, (int, float))
        or not math.isfinite(strength)
        or not MIN_STRENGTH <= strength <= MAX_STRENGTH
    ):
        raise InvalidInputError(
            f"{field_name} must be a number from {MIN_STRENGTH} to {MAX_STRENGTH}, got {strength!r}", field=field_name
        )
    return float(strength)


def load_library(config: MotionLoraLibraryConfig, layers: LayerTables | None) -> LoraLibrary:
    """Read the manifest and check every entry; never raises for a bad manifest or file."""
    folder = Path(config.path)
    manifest = folder / config.manifest
    signature = [_stat(manifest)]
    try:
        document = yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}
        raw_entries = document.get("loras", []) if isinstance(document, dict) else None
        if not isinstance(raw_entries, list):
            raise ValueError("the manifest must be a mapping with a `loras` list")
    except FileNotFoundError:
        return LoraLibrary({}, tuple(signature), layers is not None, f"no manifest at {manifest}")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
        log.warning("LoRA manifest %s cannot be read: %s", manifest, exc)
        return LoraLibrary({}, tuple(signature), layers is not None, f"the manifest cannot be read: {exc}")
    entries: dict[str, LoraEntry] = {}
    for index, raw in enumerate(raw_entries):
        entry = _entry(folder, index, raw, layers, entries)
        if entry is not None:
            entries[entry.id] = entry
            signature.extend(entry.signature)
    return LoraLibrary(entries, tuple(signature), layers is not None)


def library_signature(config: MotionLoraLibraryConfig, library: LoraLibrary) -> tuple:
    """What :func:`load_library` would record now: equal to ``library.signature`` while nothing changed."""
    folder = Path(config.path)
    current = [_stat(folder / config.manifest)]
    for entry in library.entries.values():
        current.extend(_stat(path) for path in dict.fromkeys(entry.files.values()))
    return tuple(current)


def expert_layer_tables(model: VideoModelConfig) -> LayerTables | None:
    """The experts' linear layers from their checkpoint headers (ingress side; the replica reads its modules)."""
    if model.prequantized_path is not None:
        return None
    root = Path(model.experts_path or model.path)
    tables: LayerTables = {}
    for expert, module in EXPERT_MODULES.items():
        table = expert_layer_shapes(root / module)
        if table is None:
            return None
        tables[expert] = table
    return tables


class LoraCatalog:
    """The current library of one process: read again when the manifest or a file changed, or on ``reload``.

    ``layer_tables`` returns the experts' layers, or None while they are unknown (the tiny model is built by
    the video replica; until then entries are checked without them, and checked again on the next look).
    """

    def __init__(self, config: MotionLoraLibraryConfig, layer_tables) -> None:
        self.config = config
        self._layer_tables = layer_tables
        self._library: LoraLibrary | None = None
        self._lock = threading.Lock()

    def current(self) -> LoraLibrary:
        with self._lock:
            library = self._library
            if (
                library is None
                or not library.checked_shapes
                or library_signature(self.config, library) != library.signature
            ):
                library = self._library = load_library(self.config, self._layer_tables())
            return library

    def reload(self) -> LoraLibrary:
        with self._lock:
            self._library = load_library(self.config, self._layer_tables())
            return self._library


def _entry(folder: Path, index: int, raw, layers: LayerTables | None, seen: dict) -> LoraEntry | None:
    raw_id = raw.get("id") if isinstance(raw, dict) else None
    try:
        manifest = ManifestEntry.model_validate(raw)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "entry"
        reason = f"manifest entry {index + 1}: {where}: {problem['msg']}"
        if not isinstance(raw_id, str) or not re.match(LORA_ID_PATTERN, raw_id) or raw_id in seen:
            log.warning("LoRA manifest: %s (entry skipped: it has no usable id)", reason)
            return None
        return _unavailable(raw_id, raw, reason)
    if manifest.id in seen:
        log.warning("LoRA manifest: id %r appears twice; the first entry is kept", manifest.id)
        return None
    files = {expert: folder / name for expert, name in manifest.expert_files.items()}
    signature = tuple(_stat(path) for path in dict.fromkeys(files.values()))
    status, reason, layouts = "ready", None, {}
    try:
        for expert, path in files.items():
            layouts[expert] = _checked_layout(path, expert, layers)
    except LoraFileError as exc:
        status, reason, layouts = "unavailable", str(exc), {}
    return LoraEntry(
        id=manifest.id,
        name=manifest.name,
        description=manifest.description,
        license=manifest.license,
        trigger_words=tuple(manifest.trigger_words),
        default_strength=manifest.strengths,
        files=files,
        status=status,
        reason=reason,
        layouts=layouts,
        signature=signature,
    )


def _checked_layout(path: Path, expert: Expert, layers: LayerTables | None) -> LoraLayout:
    layout = read_layout(path)
    if layers is not None:
        try:
            check_against_layers(layout, layers[expert], expert.replace("_", "-"))
        except LoraFileError as exc:
            raise LoraFileError(f"{path.name}: {exc}") from None
    return layout


def _unavailable(lora_id: str, raw: dict, reason: str) -> LoraEntry:
    name = raw.get("name")
    return LoraEntry(
        id=lora_id,
        name=name if isinstance(name, str) else lora_id,
        description="",
        license="unknown",
        trigger_words=(),
        default_strength=dict.fromkeys(EXPERT_NAMES, DEFAULT_STRENGTH),
        files={},
        status="unavailable",
        reason=reason,
    )


def _stat(path: Path) -> tuple:
    try:
        info = path.stat()
    except OSError:
        return (str(path), None, None)
    return (str(path), info.st_size, info.st_mtime_ns)
