"""Shared parts of the model benchmarks: environment record, random weights, statistics, report tables.

Nothing here times anything by itself; ``gpu_video.py`` and ``sdxl_background.py`` call the project's
pipeline classes and record what they measure with these helpers.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3


# ---------------------------------------------------------------- environment
def environment(device) -> dict:
    """Where and with what a result was measured: goes at the top of every report."""
    import torch

    info = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": _device_name(device),
        "device_type": device.type,
        "host": platform.node(),
        "cpu": _cpu_name(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": _versions(),
        "git": _git_revision(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_memory_gib"] = round(props.total_memory / GIB, 1)
        info["compute_capability"] = f"{props.major}.{props.minor}"
        info["cuda"] = torch.version.cuda
    return info


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({_cpu_name()})"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "diffusers", "transformers", "torchao", "peft", "accelerate", "av", "triton"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _git_revision() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


# ---------------------------------------------------------------- random weights
def materialize_random(module, device, dtype, *, keep_fp32=(), seed: int = 0) -> None:
    """Give every parameter of a model built with empty weights random values, allocated on ``device``.

    Build the model under ``accelerate.init_empty_weights(include_buffers=False)`` first: its parameters
    are then unallocated and its buffers (rotary tables) are real. Nothing passes through host memory.
    Matrices draw N(0, 1/fan_in) so activations keep their scale through many layers; 1-D norm weights
    are ones, other vectors small noise. Never zeros: zeros can run faster than real data. Parameters
    under a module named in ``keep_fp32`` stay float32, as ``from_pretrained`` keeps them. Shared
    (tied) parameters stay shared.
    """
    import torch

    generator = torch.Generator(device=device).manual_seed(seed)
    done: dict[int, torch.nn.Parameter] = {}
    for module_name, sub in module.named_modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            if id(param) in done:
                sub._parameters[name] = done[id(param)]
                continue
            full_name = f"{module_name}.{name}" if module_name else name
            target = torch.float32 if any(part in keep_fp32 for part in full_name.split(".")) else dtype
            data = torch.empty(param.shape, device=device, dtype=target)
            with torch.no_grad():
                if param.dim() >= 2:
                    fan_in = max(1, param.numel() // param.shape[0])
                    data.normal_(0.0, fan_in**-0.5, generator=generator)
                elif name == "weight":
                    data.fill_(1.0)
                else:
                    data.normal_(0.0, 0.02, generator=generator)
            new = torch.nn.Parameter(data, requires_grad=False)
            done[id(param)] = new
            sub._parameters[name] = new
        for name, buffer in list(sub.named_buffers(recurse=False)):
            if buffer is not None:
                if buffer.is_meta:
                    raise RuntimeError(f"buffer {module_name}.{name} has no data: build with include_buffers=False")
                sub._buffers[name] = buffer.to(device)
    module.eval()


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    torch._dynamo.reset()


def synthetic_photo(width: int, height: int, seed: int = 0):
    """An RGB picture with smooth shapes and fine texture: not flat, not zeros."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            0.5 + 0.4 * np.sin(x / width * 6.3 + 1.0),
            0.5 + 0.4 * np.cos(y / height * 4.1),
            0.5 + 0.3 * np.sin((x + y) / (width + height) * 9.0),
        ],
        axis=-1,
    )
    base += rng.normal(0.0, 0.04, base.shape).astype(np.float32)
    return Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------- statistics and reports
def summarise(runs: list[float]) -> dict:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


def summarise_runs(samples: list[dict]) -> dict:
    """``[{metric: seconds}, ...]`` (one per warm run) to ``{metric: {median, min, max, runs}}``."""
    names = list(dict.fromkeys(name for sample in samples for name in sample))
    return {name: summarise([sample[name] for sample in samples if sample.get(name) is not None]) for name in names}


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table (prints readably too)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(row[i]) for row in cells)) if cells else len(str(h)) for i, h in enumerate(headers)
    ]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join([line, rule, *body])


def write_json(report: dict, path: Path | None) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def describe_error(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message.splitlines()[0] if message else ''}"[:400]


def parse_overrides(items: list[str] | None) -> dict:
    """``["compile=regional", "vae_tiling=false", "attention_backend=null"]`` to a dict (YAML scalars)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


# ---------------------------------------------------------------- variant reports
# A report is {"title", "label", "environment", "settings", "variants", "cold_start"}. ``settings["cases"]``
# lists the measured cases (frame counts, image sizes) as strings and ``settings["case_names"]`` names them;
# each variant holds ``results[case] = {"stages": {name: summary}, "peak_gpu_mem_gib", "warmup_end_to_end_s"}``.
def render(report: dict) -> str:
    lines = [f"# {report['title']}", ""]
    if report.get("label"):
        lines += [f"**{report['label']}**", ""]
    env = report["environment"]
    versions = env["versions"]
    lines.append(
        f"device: {env['device']}; date {env['date_utc']}; torch {versions['torch']}, diffusers "
        f"{versions['diffusers']}, transformers {versions['transformers']}, torchao {versions['torchao']}; "
        f"git {env['git']}"
    )
    settings = report["settings"]
    lines += [
        f"{settings['description']}; median of {settings['runs']} warm runs after {settings['warmup']} warm-up "
        "run(s) per case; seconds",
        "",
    ]
    variants = report["variants"]
    ok = [v for v in variants if v["status"] == "ok"]
    for case in settings["cases"]:
        stage_names = list(dict.fromkeys(n for v in ok for n in v["results"].get(case, {}).get("stages", {})))
        if not stage_names:
            continue
        rows = [[name, *(fmt(_median(v, case, name)) for v in ok)] for name in stage_names]
        rows.append(["peak GPU memory (GiB)", *(fmt(_peak(v, case), 1) for v in ok)])
        rows.append(["first run (warm-up), end to end", *(fmt(_first(v, case), 1) for v in ok)])
        lines += [f"## {settings['case_names'][case]}", "", table(["stage", *(v["name"] for v in ok)], rows), ""]
    lines += ["## Summary", ""]
    base = next((v for v in variants if v["role"] == "baseline" and v["status"] == "ok"), None)
    rows = []
    for v in variants:
        row = [v["name"], v["status"], fmt(v["load_s"], 1), fmt(v.get("load_peak_gpu_mem_gib"), 1)]
        for case in settings["cases"]:
            mine, theirs = _median(v, case, "end_to_end"), _median(base, case, "end_to_end")
            row += [fmt(mine), f"{theirs / mine:.2f}x" if mine and theirs else "n/a"]
        row.append(", ".join(f"{k}={val}" for k, val in v["overrides"].items()) or "the baseline recipe")
        rows.append(row)
    headers = ["variant", "status", "ready (s)", "load peak (GiB)"]
    for case in settings["cases"]:
        headers += [f"end to end, {settings['case_names'][case]}", "baseline / this"]
    lines += [table([*headers, "changes from the baseline"], rows), ""]
    if settings.get("ready_note"):
        lines.append(f"- ready (s): {settings['ready_note']}")
    shared = set(base["substitutions"]) if base else set()
    if shared:
        lines.append("- changed in every variant to run on this device: " + "; ".join(base["substitutions"]))
    for v in variants:
        if v["error"]:
            lines.append(f"- {v['name']}: {v['error']}")
        own = [note for note in v["substitutions"] if note not in shared]
        if own:
            lines.append(f"- {v['name']}, also changed to run on this device: " + "; ".join(own))
    lines.append("")
    cold = report.get("cold_start")
    if cold:
        lines += ["## Cold start (time to ready)", ""]
        for item in cold.values():
            if not item:
                continue
            if item.get("status") == "skipped":
                lines += [f"- skipped: {item['error']}", ""]
                continue
            at_start, prepared = item["fuse_and_quantise_at_start_s"], item["from_prepared_folder_s"]
            rows = [
                ["fuse LoRA + quantise at start", fmt(at_start["median"]), ", ".join(fmt(x) for x in at_start["runs"])],
                ["from the prepared folder", fmt(prepared["median"]), ", ".join(fmt(x) for x in prepared["runs"])],
            ]
            lines += [
                f"{item['scope']}; stored as {item['storage']}; page cache {item['page_cache']}",
                "",
                table(["path", "median (s)", "runs (s)"], rows),
                "",
            ]
    return "\n".join(lines)


def _median(variant, case, stage):
    if variant is None or variant["status"] != "ok":
        return None
    return variant["results"].get(case, {}).get("stages", {}).get(stage, {}).get("median")


def _peak(variant, case):
    peak = variant["results"].get(case, {}).get("peak_gpu_mem_gib")
    return peak["median"] if peak else None


def _first(variant, case):
    warm = variant["results"].get(case, {}).get("warmup_end_to_end_s")
    return warm[0] if warm else None


def merge(paths: list[Path]) -> dict:
    """One report from several ``--json`` files of the same benchmark on the same device (split GPU runs)."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    devices = {r["environment"]["device"] for r in reports}
    if len(devices) > 1:
        raise SystemExit(f"refusing to merge results from different devices: {sorted(devices)}")
    merged = {**reports[0], "variants": [], "cold_start": None, "merged_from": [str(p) for p in paths]}
    by_name: dict[str, dict] = {}
    cases, names = [], {}
    for report in reports:
        for variant in report["variants"]:
            known = by_name.get(variant["name"])
            if known is None:
                by_name[variant["name"]] = variant = {**variant, "results": dict(variant["results"])}
                merged["variants"].append(variant)
            elif variant["status"] == "ok":  # the same variant measured at other sizes in another run
                if known["status"] != "ok":
                    known.update({k: v for k, v in variant.items() if k != "results"})
                known["results"].update(variant["results"])
        merged["cold_start"] = report.get("cold_start") or merged["cold_start"]
        for case in report["settings"]["cases"]:
            if case not in cases:
                cases.append(case)
        names.update(report["settings"]["case_names"])
    merged["settings"] = {**reports[0]["settings"], "cases": cases, "case_names": names}
    merged["variants"].sort(key=lambda v: {"baseline": 0, "ours": 1}.get(v["role"], 2))
    return merged
