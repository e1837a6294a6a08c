"""The default line sink: line protocol posted to ``/api/v2/write`` with httpx.

The same request influxdb-client's write service sends (``org``, ``bucket``,
``precision=ms``, ``Authorization: Token ...``, gzip), through the HTTP client the agent
already holds for the cloud. influxdb-client stays available (``tsdb.client:
influxdb-client``), but importing it costs the agent about 32 MB of resident memory (its
generated API models, and numpy), which a small gateway should not pay for one POST.
"""

from __future__ import annotations

import gzip
import time

import httpx

from device_profiles.site import TsdbConfig
from edge.outputs.tsdb import (
    TsdbBodyTooLarge,
    TsdbRejected,
    TsdbUnavailable,
    check_sink_options,
    resolve_token,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpLineSink:
    """Posts line protocol over HTTP(S) (gzip at ``gzip_level``, millisecond precision).

    A short retry (``retries`` more attempts, waiting ``backoff_s`` then twice as long each
    time, on connection errors and HTTP 429/5xx) rides out blips; then
    :class:`~edge.outputs.tsdb.TsdbUnavailable` is raised so the runner spools instead of
    blocking. 400/422 raise :class:`~edge.outputs.tsdb.TsdbRejected` (never retried: the
    data is malformed), 413 :class:`~edge.outputs.tsdb.TsdbBodyTooLarge` (the writer
    splits the body).
    """

    def __init__(
        self,
        config: TsdbConfig,
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        gzip_level: int = 1,
        token: str | None = None,
    ) -> None:
        check_sink_options(config, timeout_s=timeout_s, retries=retries, gzip_level=gzip_level)
        self._url = config.url.rstrip("/") + "/api/v2/write"
        self._base = config.url
        self._params = {"org": config.org, "bucket": config.bucket, "precision": "ms"}
        self._retries = retries
        self._backoff = backoff_s
        self._gzip_level = gzip_level
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        secret = token if token is not None else resolve_token(config)
        if secret:
            headers["Authorization"] = f"Token {secret}"
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    def send(self, body: bytes, lines: int) -> None:
        headers = {}
        if self._gzip_level:
            body = gzip.compress(body, compresslevel=self._gzip_level)
            headers["Content-Encoding"] = "gzip"
        attempt = 0
        while True:
            try:
                reply = self._client.post(
                    self._url, params=self._params, content=body, headers=headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt < self._retries:
                    attempt = self._pause(attempt)
                    continue
                raise TsdbUnavailable(f"cannot write to {self._base}: {exc}") from exc
            except httpx.HTTPError as exc:  # a read timeout or a broken answer: not retried
                raise TsdbUnavailable(f"cannot write to {self._base}: {exc}") from exc
            status = reply.status_code
            if status < 300:
                return
            if status in RETRY_STATUSES and attempt < self._retries:
                attempt = self._pause(attempt)
                continue
            detail = (reply.text or reply.reason_phrase or "no detail")[:300]
            if status in (400, 422):
                raise TsdbRejected(f"{self._base} refused {lines} lines (HTTP {status}): {detail}")
            if status == 413:
                raise TsdbBodyTooLarge(f"{self._base}: body of {lines} lines too large (HTTP 413)")
            raise TsdbUnavailable(f"{self._base} answered HTTP {status} to a write: {detail}")

    def _pause(self, attempt: int) -> int:
        time.sleep(self._backoff * 2**attempt)
        return attempt + 1

    def close(self) -> None:
        self._client.close()
