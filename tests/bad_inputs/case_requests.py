"""Turning an entry of ``cases.yaml`` into bytes on the wire, and sending them.

A case names its operation (``op: POST /v1/videos``) and overrides that operation's ``base`` request from the
top of the file:

- ``files``: field -> a name in hostile_files.FILE_BUILDERS (a list: sent repeatedly; null drops a base file);
- ``fields``: field -> text (a list for a repeated field; null drops a base field); ``texts``: field -> a name
  in hostile_files.TEXTS (raw bytes, possibly not UTF-8);
- ``headers`` / ``header_texts`` (values from TEXTS), ``query``, ``json`` (+ ``json_texts``), ``body`` or
  ``body_text`` with ``content_type`` (a raw body; ``content_type: null`` sends none);
- ``auth``: ``user`` (default), ``admin`` or ``none``; ``pad_to``: add a file part of zeros up to that size;
- ``path``: the concrete path (placeholders such as ``{own_job}``) when it differs from the template;
- ``transport`` (see TRANSPORTS) with ``chunk_bytes``, ``pause_s``, ``send_bytes``.

Multipart bodies are encoded here rather than by httpx so that a case can send what no well-behaved client
would: bytes that are not UTF-8, a field twice, a boundary missing from the content type.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.bad_inputs.hostile_files import build_file, text_bytes

CASES_FILE = Path(__file__).with_name("cases.yaml")
BOUNDARY = "corpus-boundary-7d1f2a"
CASE_KEYS = {
    "id", "op", "path", "files", "fields", "texts", "headers", "header_texts", "query", "json", "json_texts", "body",
    "body_text", "content_type", "pad_to", "transport", "chunk_bytes", "pause_s", "send_bytes", "auth", "status",
    "type", "field", "slow", "unlisted", "known_bug", "note",
}  # fmt: skip
TRANSPORTS = {"asgi", "chunked", "live", "live_chunked", "live_slow", "live_disconnect", "live_declared"}


@dataclass
class Case:
    id: str
    op: str
    status: int | None
    type: str | None = None
    field: str | None = None
    raw: dict = dataclasses.field(default_factory=dict)

    @property
    def category(self) -> str:
        """The id's first word: file, text, number, form, content (type), path, size, header, webhook, ..."""
        return self.id.split("-", 1)[0]

    @property
    def method(self) -> str:
        return self.op.split(" ", 1)[0]

    @property
    def template(self) -> str:
        return self.op.split(" ", 1)[1]

    @property
    def transport(self) -> str:
        return self.raw.get("transport", "asgi")


def load_cases(path: Path = CASES_FILE) -> tuple[dict, list[Case]]:
    document = yaml.safe_load(path.read_text())
    base, types, cases, seen = document.get("base", {}), document.get("types", {}), [], set()
    for entry in document["cases"]:
        unknown = set(entry) - CASE_KEYS
        if unknown:
            raise ValueError(f"case {entry.get('id')}: unknown keys {sorted(unknown)}")
        if entry["id"] in seen:
            raise ValueError(f"case id {entry['id']} is used twice")
        if entry.get("transport", "asgi") not in TRANSPORTS:
            raise ValueError(f"case {entry['id']}: transport must be one of {sorted(TRANSPORTS)}")
        seen.add(entry["id"])
        status = entry.get("status")
        cases.append(Case(entry["id"], entry["op"], status, entry.get("type", types.get(status)), entry.get("field"),
                          entry))  # fmt: skip
    return base, cases


@dataclass
class WireRequest:
    method: str
    path: str
    headers: dict[str, bytes]
    body: bytes
    query: dict[str, Any] = dataclasses.field(default_factory=dict)

    def target(self) -> str:
        from urllib.parse import urlencode

        return self.path + (f"?{urlencode(self.query, doseq=True)}" if self.query else "")


def _merged(base: dict, case: dict, key: str) -> dict:
    merged = dict(base.get(key) or {})
    merged.update(case.get(key) or {})
    return {name: value for name, value in merged.items() if value is not None}


def multipart_body(text_parts: list[tuple[str, bytes]], file_parts: list[tuple[str, bytes, str, str]]) -> bytes:
    out = bytearray()
    for name, value in text_parts:
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
    for name, data, filename, content_type in file_parts:
        out += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def build_request(case: Case, bases: dict, placeholders: dict[str, str], auth_keys: dict[str, str]) -> WireRequest:
    """``auth_keys``: the key of each role a case may name in ``auth`` (``user``, ``admin``; ``none``: no key)."""
    raw, base = case.raw, bases.get(case.op, {})
    path = raw.get("path", case.template).format(**placeholders)
    headers: dict[str, bytes] = {}
    if raw.get("auth", "user") != "none":
        headers["authorization"] = f"Bearer {auth_keys[raw.get('auth', 'user')]}".encode()
    for name, value in (raw.get("headers") or {}).items():
        headers[name.lower()] = str(value).encode()
    for name, text in (raw.get("header_texts") or {}).items():
        headers[name.lower()] = text_bytes(text)
    body = b""
    if "json" in raw:
        document = raw["json"]
        if raw.get("json_texts"):
            document = {**document, **{name: text_bytes(text).decode() for name, text in raw["json_texts"].items()}}
        body = json.dumps(document).encode()
        headers["content-type"] = b"application/json"
    elif "body" in raw:
        body = raw["body"].encode()
    elif "body_text" in raw:
        body = text_bytes(raw["body_text"])
    elif base.get("multipart") or "files" in raw or "fields" in raw or "texts" in raw:
        text_parts: list[tuple[str, bytes]] = []
        for name, value in _merged(base, raw, "fields").items():
            for item in value if isinstance(value, list) else [value]:
                text_parts.append((name, str(item).encode()))
        for name, text in (raw.get("texts") or {}).items():
            text_parts.append((name, text_bytes(text)))
        file_parts = []
        for name, file_name in _merged(base, raw, "files").items():
            for item in file_name if isinstance(file_name, list) else [file_name]:
                data, filename, content_type = build_file(item)
                file_parts.append((name, data, filename, content_type))
        if raw.get("pad_to"):
            # one more file part of zeros (in a known file field) makes the body reach the size asked for
            padding = max(0, int(raw["pad_to"]) - len(multipart_body(text_parts, file_parts)) - 200)
            file_parts = [part for part in file_parts if part[0] != base.get("pad_field", "image")]
            file_parts.append((base.get("pad_field", "image"), b"\x00" * padding, "big.png", "image/png"))
        body = multipart_body(text_parts, file_parts)
        headers["content-type"] = f"multipart/form-data; boundary={BOUNDARY}".encode()
    if "content_type" in raw:
        if raw["content_type"] is None:
            headers.pop("content-type", None)
        else:
            headers["content-type"] = raw["content_type"].encode()
    return WireRequest(case.method, path, headers, body, dict(raw.get("query") or {}))


# --- a real socket, for bodies that arrive slowly, in chunks, or not at all -------------------------------


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    bytes_sent: int


def _head(request: WireRequest, host: str, port: int, framing: dict[str, str]) -> bytes:
    lines = [f"{request.method} {request.target()} HTTP/1.1".encode(), f"host: {host}:{port}".encode()]
    for name, value in {**request.headers, **{k: v.encode() for k, v in framing.items()}}.items():
        lines.append(name.encode() + b": " + value)
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def send_raw(
    request: WireRequest,
    host: str,
    port: int,
    *,
    mode: str,
    chunk_bytes: int = 65536,
    pause_s: float = 0.0,
    send_bytes: int | None = None,
    timeout_s: float = 20.0,
) -> RawAnswer | None:
    """Send ``request`` over a real TCP connection.

    ``mode``: ``length`` (Content-Length, body in ``chunk_bytes`` pieces with ``pause_s`` between them),
    ``chunked`` (Transfer-Encoding: chunked, stopping as soon as an answer arrives), ``declared`` (a
    Content-Length of ``send_bytes`` however long the body is) or ``disconnect`` (Content-Length, then the
    connection is closed after ``send_bytes`` bytes: returns None).
    """
    body = request.body
    if mode == "chunked":
        framing = {"transfer-encoding": "chunked"}
    elif mode == "declared":
        framing = {"content-length": str(send_bytes)}
    else:
        framing = {"content-length": str(len(body))}
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sent = 0
    try:
        sock.sendall(_head(request, host, port, framing))
        limit = len(body) if mode != "disconnect" else int(send_bytes or 0)
        sock.setblocking(True)
        while sent < limit:
            piece = body[sent : min(limit, sent + chunk_bytes)]
            wire = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if mode == "chunked" else piece
            try:
                sock.sendall(wire)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: read what it said
            sent += len(piece)
            if mode == "chunked" and _answer_waiting(sock):
                break
            if pause_s:
                time.sleep(pause_s)
        if mode == "disconnect":
            return None
        if mode == "chunked" and sent >= len(body):
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"0\r\n\r\n")
        return _read_answer(sock, sent)
    finally:
        sock.close()


def _answer_waiting(sock: socket.socket) -> bool:
    import select

    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _read_answer(sock: socket.socket, sent: int) -> RawAnswer:
    data = bytearray()
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    if not head:
        raise AssertionError("the server closed the connection without an answer")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return RawAnswer(int(status_line.split()[1]), headers, body, sent)


def _dechunk(data: bytes) -> bytes:
    out, rest = bytearray(), data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)
