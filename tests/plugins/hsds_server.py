"""An Open Referral HSDS 3.0 directory for the directory search's tests: a real HTTP server on 127.0.0.1 in a
background thread, as a 211's API would answer.

``GET /hsds/services?search=...&page=...&per_page=...&full=true`` answers an HSDS page (``total_items``,
``page_number``, ``contents`` ...) of the fully nested services whose text holds every word searched for; every
request needs the ``X-API-Key`` header with the key the server was made with (401 otherwise). Each request is
recorded whole (path, query and every header) in :attr:`HsdsServer.requests`, so that a test can say what left
carehub and what did not.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

SERVICES: list[dict[str, Any]] = [
    {
        "id": "svc-meals",
        "name": "Riverside Meals on Wheels",
        "description": "Hot meals delivered at home for people recovering from a hospital stay.",
        "url": "https://meals.riverside.example",
        "eligibility_description": "Adults discharged in the last 30 days",
        "status": "active",
        "organization": {"id": "org-riverside", "name": "Riverside Senior Center"},
        "phones": [{"id": "ph-meals", "number": "+1 555 0199"}],
        "schedules": [{"id": "sch-meals", "description": "Mon-Fri 11:00-13:00"}],
        "languages": [{"id": "lang-en", "name": "English", "code": "en"}],
        "attributes": [{"id": "at-meals", "taxonomy_term": {"id": "t-food", "code": "BD-5000", "name": "Food"}}],
        "service_at_locations": [
            {
                "id": "sal-meals-center",
                "service_id": "svc-meals",
                "location": {
                    "id": "loc-center",
                    "name": "Senior center kitchen",
                    "addresses": [
                        {
                            "address_1": "40 Mill St",
                            "city": "Riverside",
                            "state_province": "OR",
                            "postal_code": "97001",
                            "country": "US",
                            "address_type": "physical",
                        }
                    ],
                },
            }
        ],
    },
    {
        "id": "svc-rides",
        "name": "Volunteer Rides to Care",
        "description": "Rides to medical appointments by volunteer drivers.",
        "organization": {"id": "org-rides", "name": "Riverside Volunteers"},
        "attributes": [{"id": "at-rides", "taxonomy_term": {"id": "t-transport", "name": "Transportation"}}],
    },
]


@dataclass
class HsdsServer:
    """The directory, running while its ``with`` block lasts; ``base_url`` is what a tenant configures."""

    api_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""

    def __enter__(self) -> HsdsServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/hsds"
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _page(found: list[dict[str, Any]], page: int, per_page: int) -> dict[str, Any]:
    shown = found[(page - 1) * per_page : page * per_page]
    pages = max(1, -(-len(found) // per_page))
    return {
        "total_items": len(found),
        "total_pages": pages,
        "page_number": page,
        "size": len(shown),
        "first_page": page == 1,
        "last_page": page >= pages,
        "empty": not shown,
        "contents": shown,
    }


def _handler(directory: HsdsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            directory.requests.append({"path": url.path, "query": query, "headers": dict(self.headers.items())})
            if self.headers.get("X-API-Key") != directory.api_key:
                return self._send(401, {"error": "unknown API key"})
            if url.path != "/hsds/services":
                return self._send(404, {"error": "not found"})
            words = query.get("search", "").lower().split()
            found = [s for s in SERVICES if all(word in json.dumps(s).lower() for word in words)]
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

    return Handler
