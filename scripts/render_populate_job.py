#!/usr/bin/env python3
"""Render k8s/populate-models-job.yaml: one download for every checkpoint configs/production.yaml reads.

    python scripts/render_populate_job.py           # rewrite k8s/populate-models-job.yaml
    python scripts/render_populate_job.py --check   # exit 1 if the committed Job is out of date
    python scripts/render_populate_job.py --list    # the downloads, one JSON object a line

The list comes from the typed config (``deployments.config.AppConfig``), so a model added to or moved in
production.yaml changes the Job, and a setting this script does not know how to fetch stops the render
with its name instead of leaving a replica to fail at start. Hugging Face folders live at
``/models/<org>/<name>`` and are fetched with ``hf download`` (only the files the loader reads); the two
segmentation models are rembg's ONNX exports, fetched from rembg's release files and checked against the
MD5 sums rembg publishes. Run with the project installed (``.venv/bin/python``): it needs its config classes.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the project's packages are beside it

from deployments.config import AppConfig, load_app_config  # noqa: E402

CONFIG = REPO / "configs" / "production.yaml"
OUTPUT = REPO / "k8s" / "populate-models-job.yaml"
MODELS_ROOT = PurePosixPath("/models")  # where the models volume is mounted, in the Job and in every Ray pod
HUB_CLIENT = "huggingface_hub==2.4.0"  # the `hf` command; the version tested with this project

# rembg's ONNX exports (the URLs and MD5 sums in rembg's own session classes) and the file name
# pipelines/background/segmentation/chain.py looks for in each folder.
ONNX_RELEASES = {
    "birefnet_path": (
        "https://github.com/danielgatis/rembg/releases/download/v0.0.0/BiRefNet-general-epoch_244.onnx",
        "7a35a0141cbbc80de11d9c9a28f52697",
        "birefnet.onnx",
    ),
    "u2net_path": (
        "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx",
        "60024c5c889badc19c04ad937298a77b",
        "u2net.onnx",
    ),
}


@dataclass(frozen=True)
class Download:
    setting: str  # the config field it satisfies, e.g. video_generator.model.path
    local_dir: str  # the folder that field names
    markers: tuple[str, ...]  # files under local_dir the loader needs; the Job checks them afterwards
    repo: str | None = None  # Hugging Face repository (`hf download`)
    files: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    url: str | None = None  # a single file (`fetch`), with its MD5
    md5: str | None = None
    revision: str | None = None  # the Hub commit to fetch (`--revision`), for pinned community repositories
    # a folder the project fills itself (the motion LoRA library): created with this file when it is missing
    init_text: str | None = None

    def command(self) -> str:
        if self.init_text is not None:
            target = f"{self.local_dir}/{self.markers[0]}"
            text = self.init_text.replace("\n", "\\n")  # one script line: printf writes the newlines
            return (
                f"mkdir -p {shlex.quote(self.local_dir)} && {{ test -s {shlex.quote(target)} || "
                f"printf {shlex.quote(text)} > {shlex.quote(target)}; }}"
            )
        if self.url:
            return shlex.join(["fetch", self.url, self.md5, f"{self.local_dir}/{self.markers[0]}"])
        words = ["hf", "download", self.repo, *self.files]
        for pattern in self.include:
            words += ["--include", pattern]
        for pattern in self.exclude:
            words += ["--exclude", pattern]
        if self.revision:
            words += ["--revision", self.revision]
        return shlex.join([*words, "--local-dir", self.local_dir])


def hub_repo(path: str, setting: str) -> str:
    """The repository id a /models/<org>/<name> folder holds."""
    relative = PurePosixPath(path).relative_to(MODELS_ROOT) if PurePosixPath(path).is_relative_to(MODELS_ROOT) else None
    if relative is None or len(relative.parts) != 2:
        raise ValueError(f"{setting}: {path} is not /models/<org>/<name>, so it names no Hugging Face repository")
    return str(relative)


def downloads(config: AppConfig) -> list[Download]:
    """Every download the checkpoints named by ``config`` need, in the order the Job runs them."""
    found: list[Download] = []
    video = config.video_generator.model
    if video.prequantized_path or video.tiny_model:
        raise ValueError(
            "video_generator.model: prequantized_path and tiny_model are written by this project "
            "(pipelines.video.prepare_checkpoint, pipelines.tiny), not downloaded"
        )
    experts = ("transformer/*", "transformer_2/*")
    found.append(
        Download(
            "video_generator.model.path",
            video.path,
            ("model_index.json",),
            repo=hub_repo(video.path, "video_generator.model.path"),
            # with experts_path the pipeline's own experts (tens of GB) are never read
            exclude=experts if video.experts_path else (),
        )
    )
    if video.experts_path:
        found.append(
            Download(
                "video_generator.model.experts_path",
                video.experts_path,
                ("transformer/config.json", "transformer_2/config.json"),
                repo=hub_repo(video.experts_path, "video_generator.model.experts_path"),
                include=experts,
            )
        )
    if video.loras is not None:
        # The motion LoRA library is filled by operators (a file plus a manifest entry, see
        # pipelines/video/lora_library.py); the Job only makes sure the folder and an empty manifest exist.
        found.append(
            Download(
                "video_generator.model.loras.path",
                video.loras.path,
                (video.loras.manifest,),
                init_text="loras: []\n",
            )
        )
    if video.lora is not None:
        if not video.lora.weight_name:
            raise ValueError("video_generator.model.lora: set weight_name, the one file to fetch from the repository")
        found.append(
            Download(
                "video_generator.model.lora.path",
                video.lora.path,
                (video.lora.weight_name,),
                repo=hub_repo(video.lora.path, "video_generator.model.lora.path"),
                files=(video.lora.weight_name,),
            )
        )
    if config.prompt_expander is not None:
        model = config.prompt_expander.model
        found.append(
            Download(
                "prompt_expander.model.path",
                model.path,
                ("config.json", "tokenizer_config.json"),
                repo=hub_repo(model.path, "prompt_expander.model.path"),
            )
        )
    if config.image_analyzer is not None:
        model = config.image_analyzer.model
        if model.config_path is not None:
            raise ValueError("image_analyzer.model.config_path: a bare open_clip config is not fetched by this Job")
        files = ("open_clip_config.json", "open_clip_model.safetensors")  # the hub layout the analyzer reads
        found.append(
            Download(
                "image_analyzer.model.checkpoint",
                model.checkpoint,
                files,
                repo=hub_repo(model.checkpoint, "image_analyzer.model.checkpoint"),
                files=files,
            )
        )
    if config.segmenter is not None:
        model = config.segmenter.model
        for name, enabled in (("birefnet_path", model.enable_birefnet), ("u2net_path", model.enable_u2net)):
            folder = getattr(model, name)
            if folder is None or not enabled:
                continue
            if folder.endswith(".onnx"):
                raise ValueError(f"segmenter.model.{name}: name the folder, not the file, for the Job to fill")
            url, md5, filename = ONNX_RELEASES[name]
            found.append(Download(f"segmenter.model.{name}", folder, (filename,), url=url, md5=md5))
    if config.background_generator is not None:
        model = config.background_generator.model
        if not model.variant:
            raise ValueError("background_generator.model.variant: the Job fetches one weight variant; set it")
        weights = f"*.{model.variant}.safetensors"
        found.append(
            Download(
                "background_generator.model.path",
                model.path,
                ("model_index.json", f"unet/diffusion_pytorch_model.{model.variant}.safetensors"),
                repo=hub_repo(model.path, "background_generator.model.path"),
                # the diffusers folders in that variant only, not the single-file and ONNX copies beside them
                include=("model_index.json", "*/config.json", "scheduler/*", "tokenizer/*", "tokenizer_2/*", weights),
            )
        )
    found += _editor_downloads(config)
    return found


def _editor_downloads(config: AppConfig) -> list[Download]:
    """The VACE pipeline (both experts, unless experts_path) and its 4-step LoRA file."""
    if config.video_editor is None:
        return []
    model = config.video_editor.model
    if model.tiny_model:
        raise ValueError("video_editor.model.tiny_model: tiny models are built by pipelines.tiny, not downloaded")
    experts = ("transformer/*", "transformer_2/*")
    found = [
        Download(
            "video_editor.model.path",
            model.path,
            ("model_index.json", "transformer/config.json"),
            repo=hub_repo(model.path, "video_editor.model.path"),
            exclude=experts if model.experts_path else (),
            revision=model.revision,
        )
    ]
    if model.experts_path:
        found.append(
            Download(
                "video_editor.model.experts_path",
                model.experts_path,
                ("transformer/config.json",),
                repo=hub_repo(model.experts_path, "video_editor.model.experts_path"),
                include=experts,
            )
        )
    if model.lora is not None:
        if not model.lora.weight_name:
            raise ValueError("video_editor.model.lora: set weight_name, the one file to fetch from the repository")
        found.append(
            Download(
                "video_editor.model.lora.path",
                model.lora.path,
                (model.lora.weight_name,),
                repo=hub_repo(model.lora.path, "video_editor.model.lora.path"),
                files=(model.lora.weight_name,),
            )
        )
    return found


def production_config(path: Path = CONFIG) -> AppConfig:
    return load_app_config(yaml.safe_load(path.read_text())["applications"][0]["args"])


SCRIPT_HEAD = f"""\
python -m venv /tmp/venv
/tmp/venv/bin/pip install --quiet --no-cache-dir {HUB_CLIENT}
export PATH=/tmp/venv/bin:$PATH

# fetch URL MD5 FILE: one file, checked against the MD5 its publisher gives; skipped when already complete
fetch() {{
  if [ -s "$3" ] && echo "$2  $3" | md5sum -c --status; then return 0; fi
  mkdir -p "$(dirname "$3")"
  python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$1" "$3.partial"
  echo "$2  $3.partial" | md5sum -c --quiet
  mv "$3.partial" "$3"
}}
"""


def script(items: list[Download]) -> str:
    lines = [SCRIPT_HEAD]
    for item in items:
        lines.append(f"# {item.setting}")
        lines.append(item.command())
    lines.append("")
    lines.append("# Fail here, not at replica start, if a file a loader looks for is missing.")
    markers = [shlex.quote(f"{item.local_dir}/{marker}") for item in items for marker in item.markers]
    lines.append("for marker in \\")
    lines += [f"  {marker} \\" for marker in markers[:-1]] + [f"  {markers[-1]}"]
    lines.append("do")
    lines.append('  test -s "$marker" || { echo "missing after download: $marker" >&2; exit 1; }')
    lines.append("done")
    lines.append('echo "models ready"')
    return "\n".join(lines) + "\n"


TEMPLATE = """\
# GENERATED by scripts/render_populate_job.py from configs/production.yaml. Do not edit by hand: change the
# config (or the script) and re-run it; a test fails when this file drifts.
# Fills the models volume with exactly the checkpoints production.yaml reads, at the paths it reads them
# from. Run it once before the RayService, and again after changing checkpoints: each download skips files
# already complete, so a re-run or a retry only fetches what is missing. It is the only pod that mounts
# the volume read-write, and the only one that needs network access.
apiVersion: batch/v1
kind: Job
metadata:
  name: vividflow-populate-models
  namespace: vividflow
  labels:
    app.kubernetes.io/part-of: vividflow
    app.kubernetes.io/component: populate-models
spec:
  backoffLimit: 3
  activeDeadlineSeconds: 43200  # ~130 GB over a slow link can take hours
  # Removing the finished Job lets `kubectl apply` create (and so re-run) it after an edit.
  ttlSecondsAfterFinished: 86400
  template:
    metadata:
      labels:
        app.kubernetes.io/part-of: vividflow
        app.kubernetes.io/component: populate-models
    spec:
      restartPolicy: OnFailure
      securityContext:
        # The Ray image's `ray` user (uid 1000, group `users`): the files it writes are its own.
        runAsUser: 1000
        runAsGroup: 100
        runAsNonRoot: true
        fsGroup: 100
      containers:
        - name: populate
          image: python:3.11-slim
          env:
            - name: HOME
              value: /tmp
            - name: HF_HOME  # Hub and Xet caches stay on scratch space, off the models volume
              value: /tmp/hf-home
            # Optional: the checkpoints are public, a token only raises rate limits. Create it with
            # `kubectl -n vividflow create secret generic hf-token --from-literal=HF_TOKEN=hf_...`.
            - name: HF_TOKEN
              valueFrom:
                secretKeyRef: {name: hf-token, key: HF_TOKEN, optional: true}
          command: [/bin/sh, -ec]
          # For reproducible rollouts add `--revision <commit>` to the downloads (in the script that renders this).
          args:
            - __SCRIPT__
          resources:
            requests: {cpu: "1", memory: 2Gi}
            limits: {cpu: "2", memory: 4Gi}
          volumeMounts:
            - {name: models, mountPath: /models}
            - {name: scratch, mountPath: /tmp}
      volumes:
        - name: models
          persistentVolumeClaim: {claimName: vividflow-models}
        - name: scratch
          emptyDir: {sizeLimit: 20Gi}
"""
SCRIPT_INDENT = 12  # the column of the `- __SCRIPT__` item


def render(config: AppConfig) -> str:
    body = script(downloads(config))
    block = "|\n" + "\n".join((" " * (SCRIPT_INDENT + 2) + line) if line else "" for line in body.splitlines())
    manifest = TEMPLATE.replace("__SCRIPT__", block)
    if yaml.safe_load(manifest)["spec"]["template"]["spec"]["containers"][0]["args"][0] != body:
        raise ValueError("the download script does not survive embedding as a literal block")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed Job, write nothing")
    parser.add_argument("--list", action="store_true", help="print the downloads as JSON lines, write nothing")
    parser.add_argument("--config", type=Path, default=CONFIG, help=f"Serve config (default: {CONFIG.name})")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="Job path (default: k8s/populate-models-job.yaml)")
    args = parser.parse_args(argv)
    try:
        config = production_config(args.config)
        if args.list:
            for item in downloads(config):
                print(json.dumps(asdict(item)))
            return 0
        expected = render(config)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"cannot render {args.output.name} from {args.config}: {error}", file=sys.stderr)
        return 2
    if not args.check:
        args.output.write_text(expected)
        print(f"wrote {args.output}")
        return 0
    current = args.output.read_text() if args.output.exists() else ""
    if current == expected:
        print(f"{args.output} is up to date with {args.config}")
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True), expected.splitlines(keepends=True), str(args.output), "rendered"
    )
    sys.stderr.writelines(list(diff)[:60])
    print(
        f"\n{args.output} is out of date with {args.config}; run `python scripts/render_populate_job.py` "
        "and commit the result",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
