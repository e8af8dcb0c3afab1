"""The options of the commands that make videos (``video``, ``batch``, ``plan``), declared once.

Typer reads a command's options from its signature, so the shared ones are ``Annotated`` aliases here and
each command lists the ones it takes. The bounds are those of ``vividflow.client.options``, which
``tests/test_cli.py`` compares with the served OpenAPI document. ``--storyboard`` and ``--prompts`` take a
file or the JSON itself; both are parsed here, so a typo is refused (exit 2) before any request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vividflow.client import options as limits


def prompt_limit(value: str | None) -> str | None:
    if value is not None and len(value) > limits.MAX_PROMPT_CHARS:
        raise typer.BadParameter(f"at most {limits.MAX_PROMPT_CHARS} characters, got {len(value)}")
    return value


def seed_limit(value: int | None) -> int | None:
    # A callback rather than max=: Click would print the 19-digit bound in every --help.
    if value is not None and value > limits.MAX_SEED:
        raise typer.BadParameter(f"at most 2**63 - 1, got {value}")
    return value


def json_list(value: str, option: str) -> list[Any]:
    """``value`` is a JSON list, or the path of a file holding one; ``BadParameter`` otherwise."""
    text = value
    if not value.lstrip().startswith("["):
        path = Path(value)
        if not path.is_file():
            raise typer.BadParameter(f"neither a JSON list nor a file: {value!r}", param_hint=option)
        text = path.read_text(encoding="utf-8")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON ({exc})", param_hint=option) from None
    if not isinstance(parsed, list) or not parsed:
        raise typer.BadParameter("must be a non-empty JSON list", param_hint=option)
    return parsed


def _storyboard(value: str | None) -> list[Any] | None:
    if value is None:
        return None
    entries = json_list(value, "'--storyboard'")
    if not all(isinstance(entry, dict) and "prompt" in entry for entry in entries):
        raise typer.BadParameter('each entry is {"prompt": ..., "duration_s": ...}', param_hint="'--storyboard'")
    return entries


SeedOption = Annotated[
    int | None,
    typer.Option(min=0, callback=seed_limit, show_default=False, help="Same seed, same result. \\[default: drawn]"),
]
WebhookOption = Annotated[
    str | None,
    typer.Option("--webhook-url", show_default=False, help="POST the job there when it ends (signed)."),
]
DurationOption = Annotated[
    float | None,
    typer.Option(
        "--duration",
        "-d",
        min=limits.VIDEO_DURATION_S.min,
        max=limits.VIDEO_DURATION_S.max,
        show_default=False,
        help="Seconds of video (16 fps); above 5 s it renders as chained segments, up to the service's maximum "
        "(30 s by default). \\[default: 3; with --images or --storyboard, their total]",
    ),
]
PromptOption = Annotated[
    str | None, typer.Option("--prompt", "-p", callback=prompt_limit, help="What should move and how.")
]
NegativePromptOption = Annotated[
    str | None, typer.Option("--negative-prompt", "-n", callback=prompt_limit, help="What to avoid.")
]
TemplateOption = Annotated[
    str | None, typer.Option("--template", "-t", help="A motion template id (vividflow templates motion).")
]
StepsOption = Annotated[
    int | None,
    typer.Option(
        min=limits.VIDEO_STEPS.min,
        max=limits.VIDEO_STEPS.max,
        show_default=False,
        help="Denoising steps. \\[default: 4]",
    ),
]
GuidanceOption = Annotated[
    float | None,
    typer.Option(
        min=limits.VIDEO_GUIDANCE.min,
        max=limits.VIDEO_GUIDANCE.max,
        show_default=False,
        help="High-noise guidance; 1 is off. \\[default: 1]",
    ),
]
Guidance2Option = Annotated[
    float | None,
    typer.Option(
        "--guidance-2",
        min=limits.VIDEO_GUIDANCE.min,
        max=limits.VIDEO_GUIDANCE.max,
        show_default=False,
        help="Low-noise guidance; 1 is off. \\[default: 1]",
    ),
]
ExpandPromptFlag = Annotated[bool, typer.Option("--expand-prompt", help="Let the server's Qwen rewrite the prompt.")]
LoraOption = Annotated[str | None, typer.Option("--lora", help="A motion LoRA id (vividflow loras).")]
LoraStrengthOption = Annotated[
    float | None,
    typer.Option(
        "--lora-strength",
        min=limits.LORA_STRENGTH.min,
        max=limits.LORA_STRENGTH.max,
        show_default=False,
        help="Scales the LoRA's default strengths; 0 is as without it. \\[default: 1]",
    ),
]

# the layout: which pictures the video is made of
ViewsOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--images",
        "--image2",
        exists=True,
        dir_okay=False,
        readable=True,
        show_default=False,
        help="Multi-view: another view after PHOTO (repeat for more, 8 pictures in all); the video moves "
        "from each to the next.",
    ),
]
LastImageOption = Annotated[
    Path | None,
    typer.Option(
        "--last-image",
        exists=True,
        dir_okay=False,
        readable=True,
        show_default=False,
        help="First/last frame: the video ends on this picture.",
    ),
]
TransitionOption = Annotated[
    float | None,
    typer.Option(
        "--transition",
        min=limits.TRANSITION_S.min,
        max=limits.TRANSITION_S.max,
        show_default=False,
        help="Multi-view: seconds per transition. \\[default: 2]",
    ),
]
StoryboardOption = Annotated[
    str | None,
    typer.Option(
        "--storyboard",
        show_default=False,
        help='A JSON list [{"prompt": ..., "duration_s": ...}, ...], or a file holding it: consecutive '
        "stretches of the video, each with its own prompt.",
    ),
]


def layout(
    image: Path, views: list[Path] | None, last_image: Path | None, transition: float | None, storyboard: str | None
) -> tuple[Path | None, dict[str, Any]]:
    """(the ``image`` to send, the layout options): with ``--images``, PHOTO is the first of the views."""
    options: dict[str, Any] = {
        "last_image": last_image,
        "transition_s": transition,
        "storyboard": _storyboard(storyboard),
    }
    if not views:
        return image, options
    if len(views) + 1 > limits.VIEWS.max:
        raise typer.BadParameter(
            f"at most {int(limits.VIEWS.max)} pictures in all, PHOTO included; got {len(views) + 1}",
            param_hint="'--images'",
        )
    return None, {**options, "images": [image, *views]}
