"""Real HTTP through a transport that keeps each request's method and path, for tests that count what a
tool call asked of a server."""

from __future__ import annotations

import httpx


class CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[str] = []  # "GET /dicom-web/studies/1.2.3", in order

    @property
    def stores(self) -> int:
        """STOW-RS requests (POST .../studies)."""
        return sum(1 for r in self.requests if r.startswith("POST ") and r.endswith("/studies"))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
