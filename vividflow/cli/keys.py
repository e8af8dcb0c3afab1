"""``vividflow keys new``: mint an API key for a tenant, offline.

The key is printed once and never stored: the service keeps only its SHA-256 (the line printed for the keys
file). Rotating a key is minting a new one, adding its line, moving clients over, and deleting the old line;
the service re-reads the file when it changes, so no restart is needed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Annotated, Literal

import typer

keys_app = typer.Typer(help="API keys for the service's keys file (ingress.auth.keys_file).", no_args_is_help=True)
KEY_PREFIX = "vf_"
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # the service's rule for tenant ids


@keys_app.command("new")
def new_key(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id: lowercase letters, digits, - and _.")],
    role: Annotated[
        Literal["user", "admin"], typer.Option("--role", help="`admin` sees every tenant's jobs.")
    ] = "user",
) -> None:
    """Print a new key (once) and the line that lets the service accept it."""
    if not TENANT_ID.match(tenant):
        raise typer.BadParameter(
            "use lowercase letters, digits, - and _ (at most 63, starting with a letter or digit)",
            param_hint="--tenant",
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    typer.echo(f"# API key for tenant {tenant} ({role}); it is shown only now, store it somewhere safe:", err=True)
    typer.echo(key)
    typer.echo("# add this line to the keys file:", err=True)
    typer.echo(f"- {{tenant: {tenant}, key_sha256: {digest}, role: {role}}}")
