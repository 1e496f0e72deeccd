"""A tiny HSDS 3.0 directory on 127.0.0.1 (the standard library's HTTP server, in a thread) for the tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

API_KEY = "test-directory-key"

SERVICES: list[dict[str, Any]] = [
    {
        "id": "svc-food-1",
        "name": "Harbor Food Pantry",
        "description": "Free groceries every week; no referral needed.",
        "url": "https://harborpantry.example.org",
        "eligibility_description": "Residents of Harbor County",
        "status": "active",
        "organization": {"id": "org-1", "name": "Harbor Community Services"},
        "phones": [{"id": "ph-1", "number": "+1 555 0142"}],
        "schedules": [{"id": "sch-1", "description": "Tue and Thu 10:00-14:00"}],
        "languages": [{"id": "lang-1", "name": "English", "code": "en"}, {"id": "lang-2", "name": "Spanish"}],
        "attributes": [{"id": "attr-1", "taxonomy_term": {"id": "term-food", "code": "BD-1800", "name": "Food"}}],
        "service_at_locations": [
            {
                "id": "sal-food-1-main",
                "service_id": "svc-food-1",
                "location": {
                    "id": "loc-1",
                    "name": "Main hall",
                    "addresses": [
                        {
                            "address_1": "1 Pier Rd",
                            "city": "Harbor",
                            "state_province": "CA",
                            "postal_code": "90001",
                            "country": "US",
                            "address_type": "physical",
                        },
                    ],
                },
            },
            {
                "id": "sal-food-1-east",
                "service_id": "svc-food-1",
                "location": {
                    "id": "loc-2",
                    "addresses": [
                        {"address_1": "PO Box 7", "city": "Harbor", "country": "US", "address_type": "postal"},
                    ],
                },
            },
        ],
    },
    {
        "id": "svc-housing-1",
        "name": "Emergency Shelter Line",
        "description": "Beds tonight, and help finding housing.",
        "organization": {"id": "org-2", "name": "Harbor Housing Coalition"},
        "attributes": [{"id": "attr-2", "taxonomy_term": {"id": "term-housing", "name": "Housing"}}],
    },
]


@dataclass
class Directory:
    base_url: str
    api_key: str = API_KEY
    requests: list[dict[str, Any]] = field(default_factory=list)


def _page(services: list[dict[str, Any]], page: int, per_page: int) -> dict[str, Any]:
    shown = services[(page - 1) * per_page : page * per_page]
    pages = max(1, -(-len(services) // per_page))
    return {
        "total_items": len(services),
        "total_pages": pages,
        "page_number": page,
        "size": len(shown),
        "first_page": page == 1,
        "last_page": page >= pages,
        "empty": not shown,
        "contents": shown,
    }


@pytest.fixture
def directory() -> Iterator[Directory]:
    """The directory's base URL, and the requests it received (path, query and the API key header)."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            received.append({"path": url.path, "query": query, "api_key": self.headers.get("X-API-Key")})
            if self.headers.get("X-API-Key") != API_KEY:
                return self._send(401, {"error": "unknown API key"})
            if url.path != "/hsds/services":
                return self._send(404, {"error": "not found"})
            words = query.get("search", "").lower().split()
            found = [s for s in SERVICES if all(w in json.dumps(s).lower() for w in words)]
            self._send(200, _page(found, int(query.get("page", 1)), int(query.get("per_page", 25))))

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Directory(base_url=f"http://127.0.0.1:{server.server_port}/hsds", requests=received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
