"""``vividflow edit VIDEO -p PROMPT --mode style|replace``: restyle a video, or replace its subject.

Submitted, followed and saved the way ``video`` is (the same progress bar, Ctrl-C cancels the job, the
same exit codes). ``--mode`` has no default because the API has none: the two modes do different things.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vividflow.cli import video_options as vo
from vividflow.cli.follow import finish, follow
from vividflow.cli.media import NoWaitFlag, queued
from vividflow.cli.state import JsonFlag, emit_json, reported_errors, state_of
from vividflow.client import options as limits
from vividflow.client.options import Control, EditMode

VideoArg = Annotated[
    Path,
    typer.Argument(
        exists=True,
        dir_okay=False,
        readable=True,
        metavar="VIDEO",
        show_default=False,
        help="The source video (MP4, MOV, WebM, MKV, GIF…), at most the service's limit (10 s by default).",
    ),
]


def edit(
    ctx: typer.Context,
    video: VideoArg,
    prompt: Annotated[
        str,
        typer.Option(
            "--prompt", "-p", callback=vo.prompt_limit, help="The new look (style) or the new subject (replace)."
        ),
    ],
    mode: Annotated[
        EditMode,
        typer.Option(
            "--mode", "-m", help="style: regenerate every pixel under the source's structure; replace: the subject."
        ),
    ],
    negative_prompt: vo.NegativePromptOption = None,
    reference_image: Annotated[
        Path | None,
        typer.Option(
            "--reference-image",
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
            help="replace only: a picture of the new subject's look.",
        ),
    ] = None,
    control: Annotated[
        Control | None,
        typer.Option(show_default=False, help="style only: the structure kept from the source. \\[default: edges]"),
    ] = None,
    strength: Annotated[
        float | None,
        typer.Option(
            min=limits.EDIT_STRENGTH.min,
            max=limits.EDIT_STRENGTH.max,
            show_default=False,
            help="How closely the source steers. \\[default: 1]",
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            min=limits.EDIT_STEPS.min,
            max=limits.EDIT_STEPS.max,
            show_default=False,
            help="Denoising steps. \\[default: 4]",
        ),
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            min=limits.EDIT_GUIDANCE.min,
            max=limits.EDIT_GUIDANCE.max,
            show_default=False,
            help="Guidance; 1 is off. \\[default: 1]",
        ),
    ] = None,
    seed: vo.SeedOption = None,
    keep_audio: Annotated[
        bool | None,
        typer.Option("--keep-audio/--no-audio", show_default=False, help="Copy the source's sound. \\[default: keep]"),
    ] = None,
    webhook_url: vo.WebhookOption = None,
    plan_only: Annotated[
        bool, typer.Option("--plan", help="Only print the source and output size and frames; nothing is rendered.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", show_default=False, help="Where to save the MP4. \\[default: <video name>_edit.mp4]"
        ),
    ] = None,
    no_wait: NoWaitFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Edit a video with a prompt: --mode style restyles it, --mode replace swaps its subject. Ctrl-C cancels."""
    state = state_of(ctx)
    target = output if output is not None else Path(video.stem + "_edit.mp4")
    folder = target if target.is_dir() else target.parent
    if not folder.is_dir():
        raise typer.BadParameter(f"the folder {folder} does not exist", param_hint="'--output' / '-o'")
    with reported_errors(state, json_output), state.client() as client:
        if plan_only:
            planned = client.plan_edit(video)
            if json_output:
                emit_json(planned)
                return
            source, out = planned["input"], planned["output"]
            state.out.print(
                f"{source['width']}×{source['height']} {source['duration_s']:g} s at {source['fps']:g} fps "
                f"→ {out['width']}×{out['height']}, {planned['frames']} frames at {planned['fps']} fps "
                f"({planned['duration_s']:g} s)"
            )
            return
        job = client.submit_edit(
            video, prompt=prompt, mode=mode, negative_prompt=negative_prompt, reference_image=reference_image,
            control=control, strength=strength, steps=steps, guidance_scale=guidance, seed=seed,
            keep_audio=keep_audio, webhook_url=webhook_url,
        )  # fmt: skip
        if no_wait:
            queued(state, job.raw, json_output)
            return
        finish(client, follow(client, job, state, json_output), target, state, json_output)
