"""``vividflow jobs show|cancel`` and ``vividflow templates motion|scenes``: reading what the service holds."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vividflow.cli.state import CliState, JsonFlag, emit_json, reported_errors, state_of
from vividflow.client import Job

jobs_app = typer.Typer(help="List, look at, cancel and delete your jobs.", no_args_is_help=True)
templates_app = typer.Typer(help="The motion and scene templates the service offers.", no_args_is_help=True)

JobIdArg = Annotated[str, typer.Argument(help="The job id (as printed by video/background --no-wait).")]


@jobs_app.command("show")
def show_job(ctx: typer.Context, job_id: JobIdArg, json_output: JsonFlag = False) -> None:
    """A job's status, progress, parameters, timings, error and result."""
    state = state_of(ctx)
    with reported_errors(state, json_output), state.client() as client:
        job = client.get_job(job_id)
    if json_output:
        emit_json(job.raw)
    else:
        _print_job(state, job)


@jobs_app.command("cancel")
def cancel_job(ctx: typer.Context, job_id: JobIdArg, json_output: JsonFlag = False) -> None:
    """Cancel a job (idempotent): a queued job at once, a running one at its next step."""
    state = state_of(ctx)
    with reported_errors(state, json_output), state.client() as client:
        job = client.cancel(job_id)
    if json_output:
        emit_json(job.raw)
    else:
        pending = " (stops at its next step)" if job.status == "running" else ""
        state.out.print(f"job {job.id}: {job.status}{pending}")


@jobs_app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="video or background.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="Jobs per page.")] = 20,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page, not only the newest.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Your jobs, newest first."""
    state = state_of(ctx)
    jobs: list[Job] = []
    with reported_errors(state, json_output), state.client() as client:
        cursor = None
        while True:
            page = client.list_jobs(status=status, kind=kind, limit=limit, cursor=cursor)
            jobs += page.jobs
            cursor = page.next_cursor
            if cursor is None or not all_pages:
                break
    if json_output:
        emit_json([job.raw for job in jobs])
        return
    table = Table(box=None, pad_edge=False)
    for column in ("id", "kind", "status", "progress", "created"):
        table.add_column(column, style="bold" if column == "id" else None)
    for job in jobs:
        table.add_row(job.id, job.kind, job.status, f"{job.progress:.0%}", job.created_at or "")
    state.out.print(table)
    if cursor is not None:
        state.out.print("(more: --all)")


@jobs_app.command("delete")
def delete_job(ctx: typer.Context, job_id: JobIdArg, json_output: JsonFlag = False) -> None:
    """Delete a job: cancels it if unfinished, removes its record, input and result."""
    state = state_of(ctx)
    with reported_errors(state, json_output), state.client() as client:
        client.delete_job(job_id)
    if json_output:
        emit_json({"id": job_id, "deleted": True})
    else:
        state.out.print(f"job {job_id}: deleted")


def _print_job(state: CliState, job: Job) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = {
        "id": job.id,
        "kind": job.kind,
        "status": job.status + (" (cancel requested)" if job.cancel_requested and not job.is_final else ""),
        "progress": f"{job.progress:.0%} (step {job.step}/{job.total_steps}, {job.stage})",
        "created": job.created_at or "",
        "finished": job.finished_at or "",
        "attempts": str(job.attempts),
    }
    if job.error:
        rows["error"] = f"{job.error.type}: {job.error.message}"
    if job.result:
        rows["result"] = f"{job.result.url} ({job.result.content_type}, {job.result.bytes or '?'} bytes)"
    for name, value in job.params.items():
        if value is not None:
            rows[f"params.{name}"] = str(value)
    for stage, seconds in job.timings_s.items():
        rows[f"timings.{stage}"] = f"{seconds:.2f} s"
    for name, value in rows.items():
        table.add_row(name, escape(value))
    state.out.print(table)


@templates_app.command("motion")
def motion_templates(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Motion template ids (use with ``video --template``), by category."""
    state = state_of(ctx)
    with reported_errors(state, json_output), state.client() as client:
        library = client.motion_templates()
    if json_output:
        emit_json(library)
        return
    table = Table("id", "prompt", show_lines=False)
    for category in library["categories"]:
        table.add_section()
        for template in category["prompts"]:
            table.add_row(template["id"], escape(template["prompt"]))
    state.out.print(table)


@templates_app.command("scenes")
def scene_templates(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Scene ids (use with ``background --scene``), with their category and name."""
    state = state_of(ctx)
    with reported_errors(state, json_output), state.client() as client:
        library = client.scene_templates()
    if json_output:
        emit_json(library)
        return
    table = Table("id", "category", "name")
    for scene in library["templates"]:
        table.add_row(scene["id"], scene["category"], escape(scene["name"]))
    state.out.print(table)
