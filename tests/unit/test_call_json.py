"""adapters/http.py's call_json: what the client refuses to send becomes a provider error."""

from __future__ import annotations

import pytest

from adapters.errors import ProviderMisconfigured
from adapters.http import call_json
from adapters.httpclient import HttpClient


async def test_a_request_the_client_cannot_send_is_a_provider_error() -> None:
    """A backend's config that cannot make a request (a line break in its key, a URL that
    is not http) is that backend's fault, told like any other provider error."""
    session = HttpClient()
    try:
        for url, headers in (
            ("http://127.0.0.1:1/api", {"Authorization": "Bearer a\nb"}),
            ("ftp://127.0.0.1/api", {}),
        ):
            with pytest.raises(ProviderMisconfigured, match="cannot send the request"):
                await call_json(session, "POST", url, timeout=5, json={}, headers=headers)
    finally:
        await session.close()
