"""Check an environment is the one docker/Dockerfile promises; the image build runs it as its last step.

    python docker/check_image.py [--require-cuda-onnxruntime]

- every dependency in pyproject.toml is installed at a version its bounds allow, torch and torchvision as
  the exact pair pinned there;
- the Ray application imports (``serve_app:build_app``, what the RayService's ``import_path`` names);
- with ``--require-cuda-onnxruntime``, onnxruntime is the build with the CUDA provider (the segmenter's
  ``device: cuda`` refuses to start without it). Listing providers needs no GPU, so the build can check it;
- no model weights were installed with the code (they belong on the models volume).

Exits 1 with one line per problem. The tests run it against the development environment, without the
CUDA requirement, so the same checks hold here and in the image.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parents[1]
WEIGHT_SUFFIXES = {".safetensors", ".onnx", ".ckpt", ".pt", ".pth", ".bin", ".gguf"}
EXACT_PAIR = ("torch", "torchvision")  # must move together: pinned with == in pyproject.toml


def dependency_problems(pyproject: Path) -> list[str]:
    problems = []
    requirements = [Requirement(line) for line in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            problems.append(f"{requirement.name} is not installed (pyproject: {requirement})")
            continue
        # a local version label (+cu130) is the build variant, not a different release
        if not requirement.specifier.contains(installed.split("+")[0], prereleases=True):
            problems.append(f"{requirement.name} {installed} is outside pyproject's {requirement.specifier}")
    pinned = {r.name: r for r in requirements if r.name in EXACT_PAIR}
    for name in EXACT_PAIR:
        specifiers = list(pinned[name].specifier) if name in pinned else []
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            problems.append(f"pyproject must pin {name} with == (torch and torchvision move together)")
    return problems


def import_problems() -> list[str]:
    try:
        module = importlib.import_module("serve_app")
    except Exception as exc:  # any import failure is the finding
        return [f"serve_app does not import: {type(exc).__name__}: {exc}"]
    return [] if callable(getattr(module, "build_app", None)) else ["serve_app has no build_app"]


def onnxruntime_problems() -> list[str]:
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return [f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider (has {providers})"]
    return []


def weight_files(roots: list[Path]) -> list[Path]:
    return sorted(path for root in roots for path in root.rglob("*") if path.suffix.lower() in WEIGHT_SUFFIXES)


def installed_package_roots() -> list[Path]:
    roots = []
    for name in ("pipelines", "deployments", "vividflow"):
        module = importlib.import_module(name)
        roots += [Path(entry) for entry in getattr(module, "__path__", [])]
    return roots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--require-cuda-onnxruntime", action="store_true", help="fail without the CUDA provider")
    parser.add_argument("--pyproject", type=Path, default=HERE / "pyproject.toml")
    args = parser.parse_args(argv)
    problems = dependency_problems(args.pyproject) + import_problems()
    if args.require_cuda_onnxruntime:
        problems += onnxruntime_problems()
    problems += [f"model weights installed with the code: {path}" for path in weight_files(installed_package_roots())]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("image check passed: dependencies within pyproject's bounds, serve_app imports, no weights")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
