"""Request guards that run before any route: oversized text bodies and text PostgreSQL cannot
store are refused.

PostgreSQL text cannot hold the NUL character, so a ``\\x00`` in a path, a query parameter or a
JSON, form or CSV body would reach the database only to fail there as a server error. This
ASGI middleware answers such requests 422 up front, for every route (binary uploads such as
images are left alone), and answers 413 to a text body above ``MAX_TEXT_BODY`` bytes instead of
buffering it (a full 5,000-event batch is about 2 MB).
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]
_TEXT_TYPES = (b"application/json", b"application/x-www-form-urlencoded", b"text/")
_NUL_MARKERS = (b"\\u0000", b"%00", b"\x00")
MAX_TEXT_BODY = 32 * 1024 * 1024


class RejectNul:
    """Answer 422 to requests whose path, query or text body carries a NUL character."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            await _refuse(send)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").lower()
        if not ctype.startswith(_TEXT_TYPES):
            await self.app(scope, receive, send)
            return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > MAX_TEXT_BODY:
            await _refuse(send, 413, "request body too large")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(b"", receive, message), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_TEXT_BODY:
                await _refuse(send, 413, "request body too large")
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if any(marker in body for marker in _NUL_MARKERS):
            await _refuse(send)
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Any, first: dict[str, Any] | None = None) -> Any:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if first is not None and not sent:
            sent = True
            return first
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return replay


async def _refuse(
    send: Any, status: int = 422, detail: str = "NUL characters are not allowed"
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
