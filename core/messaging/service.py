"""Secure messaging: threads about a patient between care-team members, the patient optionally taking part.

Only participants see a thread: anyone else (a colleague who does not take part, another tenant, a patient
of another record) gets the same 404 as for a missing thread. Messages are never changed: an edit adds a new
version with the same ``original_id``, a delete adds a tombstone version; the current version of a message
is its highest. Receipts are kept per participant and message (its original id).

A portal patient (``principal.is_patient``) acts as the thread's patient participant, and only in threads
about their own record that include them.

The operations live in :mod:`core.messaging.access` (who sees a thread), :mod:`core.messaging.views`
(reading), :mod:`core.messaging.writes` (writing) and :mod:`core.messaging.attachments`; this module is
their one public face for the API and the portal.
"""

from __future__ import annotations

from core.messaging.attachments import AttachmentUnavailable, read_attachment
from core.messaging.views import get_thread, list_messages, list_threads, mark_read, message_history
from core.messaging.writes import add_participant, create_thread, delete_message, edit_message, send_message

__all__ = [
    "AttachmentUnavailable",
    "add_participant",
    "create_thread",
    "delete_message",
    "edit_message",
    "get_thread",
    "list_messages",
    "list_threads",
    "mark_read",
    "message_history",
    "read_attachment",
    "send_message",
]
