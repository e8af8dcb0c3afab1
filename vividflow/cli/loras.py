"""``vividflow loras``: the motion LoRA library (ids for ``video --lora``), and ``--reload`` (admin)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vividflow.cli.state import JsonFlag, emit_json, reported_errors, state_of


def loras(
    ctx: typer.Context,
    reload: Annotated[
        bool, typer.Option("--reload", help="Have the service read its library again first (an admin key's call).")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """The motion LoRAs the service offers: id, status, default strengths and trigger words."""
    state = state_of(ctx)
    with reported_errors(state, json_output), state.client() as client:
        library = client.reload_loras() if reload else client.loras()
    if json_output:
        emit_json(library)
        return
    if library.get("error"):
        state.err.print(f"[yellow]the library's manifest cannot be read: {escape(library['error'] or '')}[/yellow]")
    if not library["loras"]:
        state.out.print("no LoRAs (this service has no library, or it is empty)")
        return
    table = Table("id", "status", "strength (high/low)", "trigger words", "name")
    for entry in library["loras"]:
        strength = entry["default_strength"]
        status = entry["status"] if entry["status"] == "ready" else f"{entry['status']}: {entry['reason']}"
        table.add_row(
            entry["id"],
            escape(status),
            f"{strength['high_noise']:g}/{strength['low_noise']:g}",
            escape(", ".join(entry["trigger_words"])),
            escape(entry["name"]),
        )
    state.out.print(table)
