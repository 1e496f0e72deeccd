"""Shapes of record linking: this record's link, match suggestions, and a confirmation (msgspec).

A suggestion is about another tenant's records, so it carries no value of theirs: only the candidate person's id,
a score, which fields agree, and how many records that person has.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

# How one field of this record compares with the candidate's: equal, nearly equal (a typo, swapped name order,
# day and month swapped), different, or not known on one side.
Agreement = Literal["same", "similar", "different", "unknown"]


class LinkConfirm(msgspec.Struct, forbid_unknown_fields=True):
    """Join this record to a person currently suggested for it."""

    person_id: uuid.UUID


class LinkOut(msgspec.Struct):
    """This record's person and how it came to it; ``other_records`` counts the person's other records."""

    patient_id: uuid.UUID
    person_id: uuid.UUID
    method: str
    linked_at: datetime
    other_records: int


class FieldAgreement(msgspec.Struct):
    name: Agreement
    birth_date: Agreement
    sex: Agreement
    postal_code: Agreement


class LinkSuggestion(msgspec.Struct):
    """A person in other tenants who may be this record's person; ``id`` is what a confirmation names."""

    id: uuid.UUID
    score: float
    agreement: FieldAgreement
    records: int


class LinkSuggestions(msgspec.Struct):
    items: list[LinkSuggestion]
