"""``vividflow batch PHOTO --variations N``: N videos of one request, one progress row each; and
``vividflow batches show|cancel ID``.

The batch is polled (``Client.wait_batch``) rather than followed job by job: one request a second whatever
N is. Each succeeded video is saved as ``<photo name>_<n>.mp4`` (n from 1, in the order of the variations)
in the ``--output`` folder. Ctrl-C cancels the whole batch on the server. The exit code follows the batch's
status: 0 all succeeded, 1 one or more failed, 130 cancelled; the videos that succeeded are saved either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from vividflow.cli import video_options as vo
from vividflow.cli.state import EXIT_CANCELLED, EXIT_FAILED, CliState, JsonFlag, emit_json, reported_errors, state_of
from vividflow.client import ApiError, Batch, Client, VividflowError
from vividflow.client import options as limits

batches_app = typer.Typer(help="Look at and cancel batches (made by vividflow batch).", no_args_is_help=True)


class BatchProgress:
    """One progress row per video of the batch, fed with batch snapshots (``wait_batch``'s ``on_progress``)."""

    def __init__(self, state: CliState, batch: Batch) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<4}"),
            TextColumn("{task.fields[stage]:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            console=state.err,
        )
        self._tasks: dict[str, TaskID] = {
            job.id: self._progress.add_task(f"#{index}", total=None, stage=job.stage)
            for index, job in enumerate(batch.jobs, start=1)
        }

    def __enter__(self) -> BatchProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, batch: Batch) -> None:
        for job in batch.jobs:
            task = self._tasks.get(job.id)
            if task is None:
                continue
            total = job.total_steps or None
            completed = total if job.status == "succeeded" and total else job.step
            self._progress.update(task, total=total, completed=completed, stage=job.stage)


def _seeds(value: str | None) -> list[int] | None:
    """``--seeds 1,2,3`` or a JSON list; each a whole number from 0 to 2**63 - 1."""
    if value is None:
        return None
    text = value.strip()
    try:
        seeds = vo.json_list(text, "'--seeds'") if text.startswith("[") else [int(part) for part in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"whole numbers separated by commas, got {value!r}", param_hint="'--seeds'") from None
    if not all(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= limits.MAX_SEED for seed in seeds):
        raise typer.BadParameter("each seed is a whole number from 0 to 2**63 - 1", param_hint="'--seeds'")
    return seeds


def _prompts(value: str | None) -> list[str] | None:
    if value is None:
        return None
    prompts = vo.json_list(value, "'--prompts'")
    if not all(isinstance(prompt, str) and prompt.strip() for prompt in prompts):
        raise typer.BadParameter("each prompt is a non-empty text", param_hint="'--prompts'")
    return prompts


def batch(
    ctx: typer.Context,
    image: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, metavar="PHOTO", help="The photo."),
    ],
    variations: Annotated[
        int | None,
        typer.Option(
            "--variations",
            "-N",
            min=limits.VARIATIONS.min,
            max=limits.VARIATIONS.max,
            show_default=False,
            help="How many videos. \\[default: as many as --seeds or --prompts, else 4]",
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", show_default=False, help="One seed per video: 1,2,3 or a JSON list."),
    ] = None,
    prompts: Annotated[
        str | None,
        typer.Option(
            "--prompts", show_default=False, help="One prompt per video: a JSON list of texts, or a file holding it."
        ),
    ] = None,
    duration: vo.DurationOption = None,
    prompt: vo.PromptOption = None,
    negative_prompt: vo.NegativePromptOption = None,
    template: vo.TemplateOption = None,
    steps: vo.StepsOption = None,
    guidance: vo.GuidanceOption = None,
    guidance_2: vo.Guidance2Option = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0,
            callback=vo.seed_limit,
            show_default=False,
            help="The first video's seed; the next get seed+1, ... \\[default: drawn]",
        ),
    ] = None,
    expand_prompt: vo.ExpandPromptFlag = False,
    views: vo.ViewsOption = None,
    last_image: vo.LastImageOption = None,
    transition: vo.TransitionOption = None,
    storyboard: vo.StoryboardOption = None,
    lora: vo.LoraOption = None,
    lora_strength: vo.LoraStrengthOption = None,
    webhook_url: vo.WebhookOption = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", file_okay=False, help="The folder for <photo name>_1.mp4, _2.mp4, ... (must exist)."
        ),
    ] = Path("."),
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the queued batch and exit.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Render variations of one video (different seeds, or the given seeds/prompts) side by side in the queue.
    Ctrl-C cancels the whole batch."""
    state = state_of(ctx)
    if not output.is_dir():
        raise typer.BadParameter(f"the folder {output} does not exist", param_hint="'--output' / '-o'")
    first, pictures = vo.layout(image, views, last_image, transition, storyboard)
    seed_list, prompt_list = _seeds(seeds), _prompts(prompts)  # refused before any request
    with reported_errors(state, json_output), state.client() as client:
        submitted = client.submit_batch(
            first, variations=variations, seeds=seed_list, prompts=prompt_list, duration_s=duration,
            prompt=prompt, negative_prompt=negative_prompt, template_id=template, steps=steps,
            guidance_scale=guidance, guidance_scale_2=guidance_2, seed=seed,
            expand_prompt=True if expand_prompt else None, lora=lora, lora_strength=lora_strength,
            webhook_url=webhook_url, **pictures,
        )  # fmt: skip
        if no_wait:
            if json_output:
                emit_json({"batch": submitted.raw, "outputs": None})
            else:
                state.out.print(
                    f"queued batch {submitted.id} ({len(submitted.jobs)} videos); "
                    f"follow it with: vividflow batches show {submitted.id}"
                )
            return
        done = _follow(client, submitted, state, json_output)
        outputs = _save(client, done, output, image.stem, state, json_output)
    _report(done, outputs, state, json_output)


def _follow(client: Client, submitted: Batch, state: CliState, json_output: bool) -> Batch:
    try:
        if json_output:
            return client.wait_batch(submitted)
        with BatchProgress(state, submitted) as rows:
            return client.wait_batch(submitted, on_progress=rows.update)
    except KeyboardInterrupt:
        state.err.print(f"interrupted: cancelling batch {submitted.id}")
        cancelled: Batch | None = None
        try:
            cancelled = client.cancel_batch(submitted)
        except VividflowError as error:
            state.err.print(f"[yellow]{escape(error.message if isinstance(error, ApiError) else str(error))}[/yellow]")
        except KeyboardInterrupt:
            pass
        if json_output:
            emit_json({"batch": cancelled.raw if cancelled else None, "outputs": None})
        raise typer.Exit(EXIT_CANCELLED) from None


def _save(client: Client, done: Batch, folder: Path, stem: str, state: CliState, json_output: bool) -> list[str | None]:
    outputs: list[str | None] = []
    for index, job in enumerate(done.jobs, start=1):
        if job.status != "succeeded":
            outputs.append(None)
            continue
        saved = client.download(job, folder / f"{stem}_{index}.mp4")
        outputs.append(str(saved))
        if not json_output:
            seed = job.params.get("seed")
            state.out.print(f"[green]saved[/green] {escape(str(saved))}  (seed {seed}; job {job.id})")
    return outputs


def _report(done: Batch, outputs: list[str | None], state: CliState, json_output: bool) -> None:
    if json_output:
        emit_json({"batch": done.raw, "outputs": outputs})
    for index, job in enumerate(done.jobs, start=1):
        if job.status == "failed":
            reason = f"{job.error.type}: {job.error.message}" if job.error else "no reason given"
            state.err.print(f"[red]video {index} failed[/red] (job {job.id}: {escape(reason)})")
    counts = ", ".join(f"{count} {status}" for status, count in done.counts.items() if count)
    state.err.print(f"batch {done.id}: {done.status} ({counts})")
    if done.status == "failed":
        raise typer.Exit(EXIT_FAILED)
    if done.status == "cancelled":
        raise typer.Exit(EXIT_CANCELLED)


BatchIdArg = Annotated[str, typer.Argument(help="The batch id (as printed by vividflow batch --no-wait).")]


@batches_app.command("show")
def show_batch(ctx: typer.Context, batch_id: BatchIdArg, json_output: JsonFlag = False) -> None:
    """A batch's status and its videos' states."""
    state = state_of(ctx)
    with reported_errors(state, json_output), state.client() as client:
        found = client.get_batch(batch_id)
    if json_output:
        emit_json(found.raw)
        return
    _print_batch(state, found)


@batches_app.command("cancel")
def cancel_batch(ctx: typer.Context, batch_id: BatchIdArg, json_output: JsonFlag = False) -> None:
    """Cancel every unfinished video of a batch (idempotent)."""
    state = state_of(ctx)
    with reported_errors(state, json_output), state.client() as client:
        found = client.cancel_batch(batch_id)
    if json_output:
        emit_json(found.raw)
        return
    _print_batch(state, found)


def _print_batch(state: CliState, found: Batch) -> None:
    counts: dict[str, Any] = {status: count for status, count in found.counts.items() if count}
    state.out.print(f"batch {found.id}: {found.status}, {found.progress:.0%} ({counts})")
    for index, job in enumerate(found.jobs, start=1):
        state.out.print(f"  #{index} {job.id} {job.status} seed {job.params.get('seed')}")
