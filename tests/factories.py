"""Request bodies for tests."""

from __future__ import annotations

from typing import Any


def patient_body(mrn: str = "MRN-1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mrn": mrn,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "birth_date": "1961-12-10",
        "sex": "female",
        "phone": "+1 555 0100",
        "address": {"line": ["1 Elm St"], "city": "Riverside", "country": "US"},
        "language": "en",
        "identifiers": [{"system": "urn:carehub:network-id", "value": f"NET-{mrn}"}],
    }
    body.update(overrides)
    return body
