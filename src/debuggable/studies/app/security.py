"""Response headers and request-size limits of the annotation app (plain ASGI middleware).

Tokens travel in URLs, so no page may leak its address (``Referrer-Policy:
no-referrer``) or linger in a shared cache (``Cache-Control: no-store``). The
Content-Security-Policy allows only the app's own stylesheet, script and images (no
inline code), and any page to frame the app: crowd platforms show task pages in an
iframe.
"""

from __future__ import annotations

import json

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors *"
)

#: Bodies longer than this are refused with 413 (a task's answers are a few KiB).
MAX_BODY_BYTES = 64 * 1024


class SecurityMiddleware:
    """Adds the security headers to every response and refuses oversized bodies (413)."""

    def __init__(self, app, *, max_body_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_body_bytes = int(max_body_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")
        limit = self.max_body_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_long = int(value) > limit
                except ValueError:
                    too_long = True
                if too_long:
                    await self._refuse(scope, send)
                    return
        # Read the (bounded) body first, so an oversized one is refused before the app
        # sees any of it; then hand it over in one piece.
        chunks, size = [], 0
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                size += len(message.get("body", b""))
                if size > limit:
                    await self._refuse(scope, send)
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"cache-control", b"public, max-age=3600" if static else b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, replay, send_with_headers)

    async def _refuse(self, scope, send) -> None:
        body = json.dumps({"detail": f"the request body is larger than {self.max_body_bytes} bytes."}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store"),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
