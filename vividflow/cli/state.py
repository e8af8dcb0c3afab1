"""What every command shares: the connection settings, the two consoles, exit codes and error reporting.

The client is made by a factory kept in the Click context, so a test (or a program embedding the CLI)
can pass ``obj=factory`` to ``app(...)``/``CliRunner.invoke`` and point every command at an in-process
app or a mock transport; the real factory just builds a ``Client`` from ``--url`` and ``--api-key``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from vividflow.client import ApiError, Client, ConnectionFailedError, RetryNotice, WaitTimeoutError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2  # also what Click exits with for a bad option, a missing file or a value out of range
EXIT_CANCELLED = 130  # the shell's code for "stopped by Ctrl-C" (128 + SIGINT)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout; no progress bar.")]

ClientFactory = Callable[[str | None, str | None], Client]
"""(url or None, api key or None) -> Client. None means: the client's own default (env var, then local)."""


def default_client_factory(url: str | None, api_key: str | None) -> Client:
    return Client(url, api_key=api_key)


@dataclass
class CliState:
    url: str | None
    api_key: str | None
    factory: ClientFactory = default_client_factory
    out: Console = field(default_factory=Console)  # results, for people
    err: Console = field(default_factory=lambda: Console(stderr=True))  # progress, retries, errors

    def client(self) -> Client:
        client = self.factory(self.url, self.api_key)
        client.on_retry = self._report_retry
        return client

    def _report_retry(self, notice: RetryNotice) -> None:
        what = f"HTTP {notice.status}" if notice.status else "connection failed"
        self.err.print(f"[dim]{what} ({escape(notice.reason)}); retrying in {notice.delay_s:.1f} s[/dim]")


def state_of(ctx: typer.Context) -> CliState:
    state = ctx.find_object(CliState)
    if state is None:  # a command invoked without the root callback (only in embedding code)
        state = CliState(url=None, api_key=None)
        ctx.obj = state
    return state


def emit_json(data: Any) -> None:
    """One JSON document on stdout: what ``--json`` promises scripts."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@contextlib.contextmanager
def reported_errors(state: CliState, json_output: bool) -> Iterator[None]:
    """Turn the client's exceptions into a message and the documented exit code."""
    try:
        yield
    except ApiError as error:
        if json_output:
            emit_json(error.as_dict())
        where = f" [bold]{escape(error.field)}[/bold]:" if error.field else ""
        state.err.print(f"[red]error[/red] ({error.status} {escape(error.type)}):{where} {escape(error.message)}")
        raise typer.Exit(EXIT_BAD_INPUT if error.is_bad_input else EXIT_FAILED) from None
    except ConnectionFailedError as error:
        if json_output:
            emit_json({"error": {"type": "connection_failed", "message": str(error)}})
        state.err.print(f"[red]error[/red]: {escape(str(error))}. Is the service running? Set --url or VIVIDFLOW_URL.")
        raise typer.Exit(EXIT_FAILED) from None
    except WaitTimeoutError as error:
        if json_output:
            emit_json({"error": {"type": "timeout", "message": str(error)}, "job": error.job.raw})
        state.err.print(f"[red]error[/red]: {escape(str(error))}; it keeps running: vividflow jobs show {error.job.id}")
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        state.err.print("interrupted")
        raise typer.Exit(EXIT_CANCELLED) from None
