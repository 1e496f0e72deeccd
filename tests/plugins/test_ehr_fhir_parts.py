"""The pieces of the ehr_fhir plugin under its hooks: what the test server's token endpoint refuses (so that the
plugin's tests prove something), the token cache, the assertion's key, Retry-After, the watermark, and the
mapping's edge cases."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from plugin_sdk.payloads import Identifier, PatientRef
from plugins.ehr_fhir.auth import ASSERTION_TYPE, CachedToken, TokenCache, TokenError, signing_key
from plugins.ehr_fhir.config import FhirConfig
from plugins.ehr_fhir.mapping import Unmappable, identifiers, patient_record, reference_key, sensitive_label, when
from plugins.ehr_fhir.observation import interpretation, observation_record
from plugins.ehr_fhir.push import token
from plugins.ehr_fhir.transport import retry_after_seconds
from plugins.ehr_fhir.watermark import OVERLAP, Watermark
from tests.plugins.fhir_server import FhirServer, seed

CLIENT = "carehub-test"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = {**RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True), "kid": "k1", "alg": "RS384"}
PRIVATE = {**RSAAlgorithm.to_jwk(KEY, as_dict=True), "kid": "k1", "alg": "RS384"}


@pytest.fixture(scope="module")
def server() -> Iterator[FhirServer]:
    with FhirServer() as running:
        running.register_client(CLIENT, {"keys": [PUBLIC]}, frozenset({"system/Patient.read"}))
        yield running


def assertion(server: FhirServer, *, alg: str = "RS384", kid: str = "k1", **claims: Any) -> str:
    body = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": server.token_url,
        "exp": int(time.time()) + 240,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode({k: v for k, v in body.items() if v is not None}, KEY, algorithm=alg, headers={"kid": kid})


def ask(server: FhirServer, client_assertion: str, **form: str) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.read",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
        **form,
    }
    return httpx.post(server.token_url, data=data)


def test_a_sound_assertion_gets_a_token_that_opens_the_fhir_endpoints(server: FhirServer) -> None:
    answer = ask(server, assertion(server))
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert answer.json()["token_type"] == "bearer" and answer.json()["expires_in"] == 300
    read = httpx.get(f"{server.base_url}/Patient/p1", headers={"Authorization": f"Bearer {token}"})
    assert read.status_code == 200 and read.json()["id"] == "p1"
    assert httpx.get(f"{server.base_url}/Patient/p1").status_code == 401
    assert httpx.get(f"{server.base_url}/Patient/p1", headers={"Authorization": "Bearer forged"}).status_code == 401
    # Granted Patient.read only.
    other = httpx.get(f"{server.base_url}/Encounter", headers={"Authorization": f"Bearer {token}"})
    assert other.status_code == 403


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda s: assertion(s, alg="RS256"), "RS384 or ES384"),
        (lambda s: assertion(s, kid="k2"), "no key 'k2'"),
        (lambda s: assertion(s, aud="https://elsewhere.example/token"), "Audience"),
        (lambda s: assertion(s, sub="someone-else"), "iss and sub"),
        (lambda s: assertion(s, iss="unknown", sub="unknown"), "unknown client"),
        (lambda s: assertion(s, exp=int(time.time()) - 10), "expired"),
        (lambda s: assertion(s, exp=int(time.time()) + 600), "5 minutes"),
        (lambda s: assertion(s, jti=None), "jti"),
        (lambda s: assertion(s)[:-8] + "AAAAAAAA", "Signature"),
        (lambda s: "not.a.jwt", "malformed"),
    ],
)
def test_a_bad_assertion_is_refused_as_invalid_client(server: FhirServer, make: Any, reason: str) -> None:
    answer = ask(server, make(server))
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client" and reason in answer.json()["error_description"]


def test_a_jti_is_accepted_once(server: FhirServer) -> None:
    once = assertion(server)
    assert ask(server, once).status_code == 200
    again = ask(server, once)
    assert again.status_code == 401 and again.json()["error_description"] == "jti already used"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}, "invalid_request"),
        ({"scope": "system/Patient.read system/Patient.write"}, "invalid_scope"),
    ],
)
def test_a_wrong_request_is_refused(server: FhirServer, form: dict[str, str], error: str) -> None:
    answer = ask(server, assertion(server), **form)
    assert answer.status_code == 400 and answer.json()["error"] == error


# -- the plugin's side -------------------------------------------------------------------------------------------


def config(**changes: Any) -> FhirConfig:
    base = {
        "base_url": "https://ehr.example.org/fhir",
        "auth": "smart_backend",
        "token_url": "https://ehr.example.org/token",
        "client_id": CLIENT,
        "private_jwks": {"keys": [PRIVATE]},
    }
    return FhirConfig.from_mapping({**base, **changes})


def test_the_signing_key_is_chosen_by_kid_and_must_be_private() -> None:
    key, alg, kid = signing_key(config())
    assert (alg, kid) == ("RS384", "k1") and key is not None
    with pytest.raises(TokenError, match="no private signing key with kid 'k9'"):
        signing_key(config(kid="k9"))
    with pytest.raises(TokenError, match="no private signing key"):
        signing_key(config(private_jwks={"keys": [PUBLIC]}))
    with pytest.raises(TokenError, match="cannot sign ES384"):
        signing_key(config(alg="ES384"))


def test_the_token_cache_is_bounded_and_keyed() -> None:
    now = datetime.now(UTC)
    cache = TokenCache(size=2)
    for n in range(3):
        cache.put(("tenant", f"client{n}", "url"), CachedToken(f"t{n}", now + timedelta(minutes=4), "s"))
    assert len(cache) == 2 and cache.get(("tenant", "client0", "url"), now, "s") is None
    assert cache.get(("tenant", "client2", "url"), now, "s") is not None
    assert cache.get(("tenant", "client2", "url"), now, "other scope") is None  # asked for other scopes
    cache.put(("tenant", "client1", "url"), CachedToken("t1", now + timedelta(minutes=4), "s"))
    assert cache.get(("tenant", "client1", "url"), now + timedelta(minutes=5), "s") is None  # expired


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    request = httpx.Request("GET", "https://ehr.example.org/fhir/Patient")

    def wait(**headers: str) -> float | None:
        answer = httpx.Response(429, headers={k.replace("_", "-"): v for k, v in headers.items()}, request=request)
        return retry_after_seconds(answer, now)

    assert wait(Retry_After="3") == 3.0
    later = format_datetime(now + timedelta(seconds=20), usegmt=True)
    assert wait(Retry_After=later) == 20.0
    # Measured against the server's Date, not our clock.
    server_date = format_datetime(now + timedelta(seconds=15), usegmt=True)
    assert wait(Retry_After=later, Date=server_date) == 5.0
    assert wait(Retry_After="soon") is None and wait() is None
    assert wait(Retry_After=format_datetime(now - timedelta(seconds=5), usegmt=True)) == 0.0


def test_the_watermark() -> None:
    run = datetime(2026, 12, 1, 12, 0, 0, 123000, tzinfo=UTC)
    page = Watermark(since=None, run=run, next="https://ehr.example.org/fhir/_page?token=x")
    assert Watermark.decode(page.encode()) == page
    done = page.finished(run)
    assert done.encode() == '{"v":1,"since":"2026-12-01T11:59:30.123Z"}' and done.since == run - OVERLAP
    assert Watermark.decode("2026-11-01T00:00:00Z").since == datetime(2026, 11, 1, tzinfo=UTC)
    assert Watermark.decode(None) == Watermark()
    with pytest.raises(ValueError, match="not a watermark"):
        Watermark.decode('{"v": 99}')


# -- mapping edge cases ------------------------------------------------------------------------------------------

PATIENT = PatientRef(identifiers=(Identifier(system="urn:test:mrn", value="1"),))


def test_times() -> None:
    assert when("2026-11-01T10:00:00-05:00") == datetime(2026, 11, 1, 15, 0, tzinfo=UTC)
    assert when("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC) and when("2026") == datetime(2026, 1, 1, tzinfo=UTC)
    assert when(None) is None
    with pytest.raises(Unmappable, match="without a timezone"):
        when("2026-11-01T10:00:00")


def test_numbers_keep_the_precision_the_ehr_wrote() -> None:
    body = msgspec.json.encode(seed()["Observation"]["o4"]).replace(b'"value":5.9', b'"value":5.90')
    record = observation_record(json.loads(body, parse_float=Decimal), PATIENT)
    assert (record.value, record.reference_range) == ("5.90", "12.0-16.0 g/dL")


def test_interpretation_flags() -> None:
    def flag(*codings: dict[str, str]) -> str:
        return interpretation({"interpretation": [{"coding": list(codings)}]})

    v3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    assert flag({"system": v3, "code": "LL"}) == "critical_low"
    assert flag({"system": v3, "code": "H"}, {"system": v3, "code": "HH"}) == "critical_high"  # the worst
    assert flag({"system": v3, "code": "WR"}) == "abnormal"  # a code we do not know is not "normal"
    assert flag({"system": "urn:local:flags", "code": "HH"}) == "critical_high"
    assert flag({"system": "urn:local:flags", "code": "ZZ"}) == "normal"
    assert interpretation({}) == "normal"


def test_patients_need_identifiers_a_name_and_a_full_birth_date() -> None:
    patient = seed()["Patient"]["p2"]
    assert patient_record(patient, None).identifiers[0].system == "urn:oid:2.16.840.1.113883.3.7000.1"
    with pytest.raises(Unmappable, match="full birthDate"):
        patient_record({**patient, "birthDate": "1942-03"}, None)
    with pytest.raises(Unmappable, match="given and a family"):
        patient_record({**patient, "name": [{"use": "official", "family": "Okafor"}]}, None)
    ended = [{"system": "urn:a", "value": "1", "period": {"end": "2020-01-01"}}, {"system": "urn:b", "value": "2"}]
    assert identifiers({"identifier": ended}, None) == (Identifier(system="urn:b", value="2"),)


def test_references_labels_and_tokens() -> None:
    assert reference_key({"reference": "https://ehr.example.org/fhir/Patient/123/_history/4"}) == "Patient/123"
    assert reference_key({"reference": "Group/7"}) is None and reference_key({"display": "x"}) is None
    labelled = {"meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}}
    assert sensitive_label(labelled) == "behavioral_health" and sensitive_label({}) is None
    assert token("urn:a|b", "x,y\\z") == "urn:a\\|b|x\\,y\\\\z"
