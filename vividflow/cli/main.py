"""The ``vividflow`` command: the root options and the command table.

Exit codes: 0 done, 1 the job (or the service) failed, 2 bad input (refused before any request, or a
``400``/``413``/``422`` from the server, with its message), 130 cancelled (Ctrl-C, or by someone else).
"""

from __future__ import annotations

from typing import Annotated

import typer

from vividflow.cli import media
from vividflow.cli.batch import batch, batches_app
from vividflow.cli.edit import edit
from vividflow.cli.jobs import jobs_app, templates_app
from vividflow.cli.keys import keys_app
from vividflow.cli.loras import loras
from vividflow.cli.state import CliState, default_client_factory
from vividflow.client import API_KEY_ENV, DEFAULT_URL, URL_ENV
from vividflow.version import __version__

app = typer.Typer(
    name="vividflow",
    help="Image-to-video, video editing and background replacement on a VividFlow Serve deployment.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold the API key
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vividflow {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", envvar=URL_ENV, show_default=False, help=f"The service. \\[default: {DEFAULT_URL}]"),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar=API_KEY_ENV, show_default=False, help="Sent as a Bearer token."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    # ``obj`` may already hold a client factory: that is the seam tests and embedding programs use.
    factory = ctx.obj if callable(ctx.obj) else default_client_factory
    ctx.obj = CliState(url=url, api_key=api_key, factory=factory)


app.command("video", no_args_is_help=True)(media.video)
app.command("background", no_args_is_help=True)(media.background)
app.command("plan", no_args_is_help=True)(media.plan)
app.command("mask", no_args_is_help=True)(media.mask)
app.command("batch", no_args_is_help=True)(batch)
app.command("edit", no_args_is_help=True)(edit)
app.command("loras")(loras)
app.add_typer(batches_app, name="batches")
app.add_typer(jobs_app, name="jobs")
app.add_typer(templates_app, name="templates")
app.add_typer(keys_app, name="keys")


def main() -> None:
    """The console entry point (``vividflow``)."""
    app()
