"""Input and output shapes of patient records (msgspec structs, unknown fields refused)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from core.inputs import SAFE_LINE, Email, normalise_emails

Sex = Literal["female", "male", "other", "unknown"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=SAFE_LINE)]
Mrn = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")]
Phone = Annotated[str, msgspec.Meta(min_length=3, max_length=32, pattern=r"^[0-9+()\-. ]+$")]
Language = Annotated[str, msgspec.Meta(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]
Short = Annotated[str, msgspec.Meta(max_length=100, pattern=SAFE_LINE)]


class Address(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A postal address as shown (what was stored is shown as it was stored)."""

    line: list[str] = msgspec.field(default_factory=list)
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


class AddressIn(Address, forbid_unknown_fields=True, omit_defaults=True):
    """A postal address as given: every part a single line of visible text."""

    line: list[Annotated[str, msgspec.Meta(max_length=200, pattern=SAFE_LINE)]] = msgspec.field(default_factory=list)
    city: Short | None = None
    state: Short | None = None
    postal_code: Annotated[str, msgspec.Meta(max_length=20, pattern=SAFE_LINE)] | None = None
    country: Annotated[str, msgspec.Meta(max_length=2, min_length=2, pattern=SAFE_LINE)] | None = None


class Identifier(msgspec.Struct, forbid_unknown_fields=True):
    system: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_LINE)]
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=SAFE_LINE)]


class PatientCreate(msgspec.Struct, forbid_unknown_fields=True):
    mrn: Mrn
    given_name: Name
    family_name: Name
    birth_date: date
    sex: Sex
    phone: Phone | None = None
    email: Email | None = None
    address: AddressIn | None = None
    language: Language | None = None
    identifiers: Annotated[list[Identifier], msgspec.Meta(max_length=20)] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        normalise_emails(self, "email")


class PatientUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """A partial update: fields left out keep their value; ``null`` clears an optional field."""

    given_name: Name | msgspec.UnsetType = msgspec.UNSET
    family_name: Name | msgspec.UnsetType = msgspec.UNSET
    birth_date: date | msgspec.UnsetType = msgspec.UNSET
    sex: Sex | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | msgspec.UnsetType | None = msgspec.UNSET
    email: Email | msgspec.UnsetType | None = msgspec.UNSET
    address: AddressIn | msgspec.UnsetType | None = msgspec.UNSET
    language: Language | msgspec.UnsetType | None = msgspec.UNSET
    identifiers: Annotated[list[Identifier], msgspec.Meta(max_length=20)] | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        normalise_emails(self, "email")


class PatientOut(msgspec.Struct):
    id: uuid.UUID
    mrn: str
    given_name: str
    family_name: str
    birth_date: date
    sex: str
    phone: str | None
    email: str | None
    address: Address | None
    language: str | None
    identifiers: list[Identifier]
    active: bool
    created_at: datetime
    updated_at: datetime


class PortalInvitationCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Email

    def __post_init__(self) -> None:
        normalise_emails(self, "email")
