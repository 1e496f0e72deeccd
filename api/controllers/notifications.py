"""Alert rule settings (tenant administrators), notification preferences, and what was sent to a patient."""

from __future__ import annotations

import uuid

from litestar import Controller, get, put
from litestar.params import FromPath, JSONBody

from api.deps import Caller, Db, Limit, Offset, Page, page_of
from core.notify import rules_config, service
from core.notify.schemas import AlertSettingsBody, AlertSettingsOut, NotificationOut, PreferencesBody, PreferencesOut


class AlertSettingsController(Controller):
    path = "/api/v1/alert-settings"
    tags = ["alerts"]

    @get("/", summary="The tenant's alert rules: escalation delays, reminders, quiet hours (defaults where unset)")
    async def read(self, session: Db, principal: Caller) -> AlertSettingsOut:
        return await rules_config.read(session, principal)

    @put("/", status_code=200, summary="Replace the tenant's alert rules (omitted fields take their defaults)")
    async def replace(self, session: Db, principal: Caller, data: JSONBody[AlertSettingsBody]) -> AlertSettingsOut:
        return await rules_config.replace(session, principal, data)


class NotificationPreferenceController(Controller):
    path = "/api/v1"
    tags = ["alerts"]

    @get("/me/notification-preferences", summary="How I am told of alerts besides my inbox")
    async def mine(self, session: Db, principal: Caller) -> PreferencesOut:
        return await service.my_preferences(session, principal)

    @put("/me/notification-preferences", status_code=200, summary="Set how I am told of alerts")
    async def set_mine(self, session: Db, principal: Caller, data: JSONBody[PreferencesBody]) -> PreferencesOut:
        return await service.set_my_preferences(session, principal, data)

    @get("/patients/{patient_id:uuid}/notification-preferences", summary="How the patient wants to be reached")
    async def patients(self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID]) -> PreferencesOut:
        return await service.patient_preferences(session, principal, patient_id)

    @put(
        "/patients/{patient_id:uuid}/notification-preferences",
        status_code=200,
        summary="Record how the patient wants to be reached",
    )
    async def set_patients(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID], data: JSONBody[PreferencesBody]
    ) -> PreferencesOut:
        return await service.set_patient_preferences(session, principal, patient_id, data)

    @get("/patients/{patient_id:uuid}/notifications", summary="What was sent to the patient, and whether it went out")
    async def sent(
        self, session: Db, principal: Caller, patient_id: FromPath[uuid.UUID], limit: Limit = 50, offset: Offset = 0
    ) -> Page[NotificationOut]:
        items = await service.patient_notifications(session, principal, patient_id, limit=limit, offset=offset)
        return page_of(items, limit, offset)
