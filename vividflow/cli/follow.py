"""Following a submitted job to its end: the live progress bar, Ctrl-C, and the final download.

Rich draws the bar (stage, step/total, elapsed, ETA) on stderr, so stdout holds only results and
``--json`` output stays parseable. Ctrl-C while a job runs cancels that job on the server (it would
otherwise keep a GPU busy for nobody) and exits with 130.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vividflow.cli.state import EXIT_CANCELLED, EXIT_FAILED, CliState, emit_json
from vividflow.client import ApiError, Client, Job, VividflowError


class JobProgress:
    """A Rich progress bar fed with job snapshots (the ``on_progress`` callback of ``Client.wait``)."""

    def __init__(self, state: CliState, job: Job) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[stage]:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=state.err,
        )
        self._task: TaskID = self._progress.add_task(job.kind, total=None, stage=job.stage)

    def __enter__(self) -> JobProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, job: Job) -> None:
        # total None (while queued) draws an indeterminate bar; the step count appears once a worker has it
        total = job.total_steps or None
        completed = total if job.status == "succeeded" and total else job.step
        self._progress.update(self._task, total=total, completed=completed, stage=job.stage)


def follow(client: Client, job: Job, state: CliState, json_output: bool) -> Job:
    """Wait for ``job`` to be final, drawing progress unless ``json_output``; Ctrl-C cancels it (exit 130)."""
    try:
        if json_output:
            return client.wait(job)
        with JobProgress(state, job) as bar:
            return client.wait(job, on_progress=bar.update)
    except KeyboardInterrupt:
        cancel_after_interrupt(client, job, state, json_output)


def cancel_after_interrupt(client: Client, job: Job, state: CliState, json_output: bool) -> NoReturn:
    state.err.print(f"interrupted: cancelling job {job.id}")
    try:
        cancelled = client.cancel(job)
    except VividflowError as error:  # 409: it succeeded before the cancel arrived; or the service is gone
        state.err.print(f"[yellow]{escape(error.message if isinstance(error, ApiError) else str(error))}[/yellow]")
        cancelled = None
    except KeyboardInterrupt:  # a second Ctrl-C: stop asking
        cancelled = None
    if json_output:
        emit_json({"job": cancelled.raw if cancelled else None, "output": None})
    elif cancelled is not None:
        requested = " (cancel requested)" if cancelled.cancel_requested else ""
        state.err.print(f"job {job.id} is {cancelled.status}{requested}")
    raise typer.Exit(EXIT_CANCELLED)


def finish(client: Client, job: Job, output: Path, state: CliState, json_output: bool) -> None:
    """Download a succeeded job's result and report it; exit 1 for a failed job and 130 for a cancelled one."""
    if job.status == "succeeded":
        saved = client.download(job, output)
        if json_output:
            emit_json({"job": job.raw, "output": str(saved)})
        else:
            state.out.print(f"[green]saved[/green] {escape(str(saved))}  {escape(describe(job))}")
        return
    if json_output:
        emit_json({"job": job.raw, "output": None})
    if job.status == "cancelled":
        state.err.print(f"job {job.id} was cancelled")
        raise typer.Exit(EXIT_CANCELLED)
    error = job.error
    reason = f"{error.type}: {error.message}" if error else "no reason given"
    state.err.print(f"[red]job {job.id} failed[/red] ({escape(reason)})")
    raise typer.Exit(EXIT_FAILED)


def describe(job: Job) -> str:
    """One line about a finished job: its size, frames, seed and how long it took."""
    params = job.params
    parts = []
    width, height = params.get("width") or params.get("input_width"), params.get("height") or params.get("input_height")
    if width and height:
        parts.append(f"{width}×{height}")
    if params.get("frames"):
        parts.append(f"{params['frames']} frames at {params.get('fps', '?')} fps")
    if params.get("seed") is not None:
        parts.append(f"seed {params['seed']}")
    if job.timings_s:
        parts.append(f"{sum(job.timings_s.values()):.1f} s")
    return f"({', '.join(parts)}; job {job.id})" if parts else f"(job {job.id})"
