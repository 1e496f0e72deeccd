"""Every hook carehub calls, grouped by family: the vendors' reference (docs/plugins/reference.md is generated
from these docstrings).

How the host calls a hook: for one tenant, it calls each plugin that implements the hook **and is enabled for
that tenant** (network-wide hooks: each installed plugin the network allows), one plugin at a time, with keyword
arguments, under a time limit (``CAREHUB_PLUGIN_TIMEOUT_MS``) and the plugin's circuit breaker for that tenant.
What a hook returns is checked against its declared type; an exception, a time-out or a wrong return is the
plugin's failure: audited, shown to the tenant's admins, counted by the breaker, and (in a worker) retried. The
core request or job goes on. Hooks may gain keyword parameters in later SDK versions, never lose them: accept
only the parameters you use (pluggy passes those by name).

``context`` (:class:`~plugin_sdk.context.PluginContext`) carries the tenant, the plugin's own configuration for
it, an HTTP client restricted to the plugin's hosts, and a clock. Hooks are ``async def`` unless said otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pluggy

from plugin_sdk.context import PluginContext
from plugin_sdk.effects import AnyEffect, InboundResult, PullBatch
from plugin_sdk.notify import Channel
from plugin_sdk.payloads import (
    CarePlanPayload,
    DeviceReadingBatch,
    Health,
    InboundMessage,
    JoinLink,
    PushResult,
    RideBooking,
    RideQuote,
    RideRequest,
    RideStatus,
    ServiceQuery,
    ServiceRecord,
    TaskPayload,
    VisitBooking,
    VisitRequest,
)

PROJECT = "carehub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    """The hook specifications (pluggy). A plugin implements any of them as module functions marked
    ``@hookimpl``."""

    # -----------------------------------------------------------------------------------------------------------
    # Lifecycle
    # -----------------------------------------------------------------------------------------------------------

    @hookspec
    async def carehub_on_enable(self, context: PluginContext) -> None:
        """A tenant admin enabled the plugin (or changed its configuration); ``context.config`` is the new one,
        already valid against the manifest's schema.

        Called in the request that enables it. Raise ``ValueError`` to refuse the configuration (the admin gets
        a 422 with your message, nothing is stored); do not call other systems here (a slow peer would hold the
        request): check reachability in :func:`carehub_health_check`.

        .. versionadded:: 1.0
        """

    @hookspec
    async def carehub_on_disable(self, context: PluginContext) -> None:
        """A tenant admin disabled the plugin, or the network admin forbade it. Called in that request, after
        the change is committed; the return value and any exception are only logged.

        .. versionadded:: 1.0
        """

    @hookspec
    async def carehub_health_check(self, context: PluginContext) -> Health:
        """Whether the plugin can work for this tenant now (credentials accepted, peer reachable).

        Called in a worker when an admin asks (``POST /api/v1/plugins/{name}/health``) and by ``carehub plugins
        check``. The host records the result and shows it with the plugin's status.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    # -----------------------------------------------------------------------------------------------------------
    # EHR connector: pulls
    # -----------------------------------------------------------------------------------------------------------

    @hookspec
    async def carehub_ehr_pull_patients(self, context: PluginContext, since: str | None) -> PullBatch:
        """Patients created or changed in the EHR since the watermark ``since`` (None: the first pull).

        Called in a worker, per tenant, every ``sync_interval_minutes`` of the plugin's configuration (the
        scheduler's ``plugin.sync`` tick), before the other pulls. Return :class:`~plugin_sdk.effects.PullBatch`:
        ``UpsertPatient`` effects, the next watermark (an opaque string of yours, such as the server time of the
        search) and ``more=True`` when another page is waiting (the host calls again at once with your
        watermark). The host applies the batch in one transaction, then stores the watermark; a failed batch is
        retried with the old watermark, so a pull must be repeatable.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    @hookspec
    async def carehub_ehr_pull_encounters(self, context: PluginContext, since: str | None) -> PullBatch:
        """Encounters (admissions, emergency visits, observation stays) changed since ``since``, as
        ``RecordEncounter`` effects. Same calling rules as :func:`carehub_ehr_pull_patients`, after it.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    @hookspec
    async def carehub_ehr_pull_conditions(self, context: PluginContext, since: str | None) -> PullBatch:
        """Conditions (problem list, encounter diagnoses) changed since ``since``, as ``RecordCondition``
        effects. Same calling rules as :func:`carehub_ehr_pull_patients`.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    @hookspec
    async def carehub_ehr_pull_observations(self, context: PluginContext, since: str | None) -> PullBatch:
        """Observations (lab results with interpretation flags and reference ranges, vital signs) changed since
        ``since``, as ``AddObservation`` effects. Same calling rules as :func:`carehub_ehr_pull_patients`.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    # -----------------------------------------------------------------------------------------------------------
    # EHR connector: pushes
    # -----------------------------------------------------------------------------------------------------------

    @hookspec
    async def carehub_ehr_push_care_plan(self, context: PluginContext, care_plan: CarePlanPayload) -> PushResult:
        """Send a care plan to the EHR (create, or update the one pushed before: use ``care_plan.id`` as your
        identifier there).

        Called in a worker after a care plan of the tenant is created or changed (the ``care_plan.created`` and
        ``care_plan.updated`` events), for each plugin the tenant enabled that implements it and whose manifest
        declares ``care_plan`` (and, for a plan labelled ``behavioral_health``, ``substance_use_disorder`` or
        ``social_needs``, that label too), with the plan as it stands then. Return where it now lives (the host
        shows it to the tenant's admins); raise to have the job retried with backoff. A retry calls only the
        plugins that have not taken the plan as it stands, so another plugin's failure never sends it to you twice.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    @hookspec
    async def carehub_ehr_push_task(self, context: PluginContext, task: TaskPayload) -> PushResult:
        """Send a task to the EHR. Called in a worker after a task of the tenant is created, changes status, or
        changes its title, description, priority or due time (not when it is reassigned or escalated: that is
        carehub's own routing), for plugins declaring ``tasks_appointments``; as :func:`carehub_ehr_push_care_plan`.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    # -----------------------------------------------------------------------------------------------------------
    # Inbound feeds
    # -----------------------------------------------------------------------------------------------------------

    @hookspec
    def carehub_inbound_message(self, context: PluginContext, message: InboundMessage) -> InboundResult | None:
        """What one received message means (an HL7 v2 message from an MLLP listener, a webhook body).

        Called (synchronously: parsing only, no network) by the process that received the message, per message,
        for the plugins enabled for the listener's tenant; the first that returns a result handles it (return
        None for a content type that is not yours). The host stores the raw message and applies your effects in
        one transaction before it answers the sender (or, on a listener the operator runs with ``--ack stored``,
        stores it, answers, and applies the effects right after, in arrival order); a message with ``error`` is
        kept for an admin to review and replay. A ``control_id`` seen before is not applied twice.

        .. versionadded:: 1.0
        """

    @hookspec
    def carehub_inbound_reply(
        self, context: PluginContext, message: InboundMessage, outcome: str, error: str | None
    ) -> str | None:
        """The answer to send the sender for ``message``: ``outcome`` is ``accepted`` (stored and applied, or a
        repeat of one that was), ``error`` (stored but not applied: the message or its effects were invalid;
        ``error`` says why) or ``rejected`` (not even stored: say so, the sender must send it again).

        Called synchronously in the receiving process, after the transaction; first non-None result wins. For
        HL7 v2 this is the ACK with MSA-1 AA, AE or AR.

        .. versionadded:: 1.0
        """

    @hookspec
    async def carehub_device_observations(
        self, context: PluginContext, batch: DeviceReadingBatch
    ) -> Sequence[AnyEffect]:
        """Readings from a wearable or home monitor, to turn into effects (``AddObservation`` with category
        ``device``, a ``CreateTask`` when a reading needs a call).

        Called in a worker for each batch a device feed delivered for the tenant (``device.readings`` event); all
        results are applied, each plugin's list in its own transaction.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    # -----------------------------------------------------------------------------------------------------------
    # Community resource directory
    # -----------------------------------------------------------------------------------------------------------

    @hookspec
    async def carehub_directory_search(self, context: PluginContext, query: ServiceQuery) -> Sequence[ServiceRecord]:
        """Services matching ``query`` from a community resource directory (211, an Open Referral HSDS API).

        Called in a request (the coordinator is waiting: keep within the time limit) for each enabled directory
        plugin; all results are shown together, each labelled with the plugin that found it.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    # -----------------------------------------------------------------------------------------------------------
    # Telehealth
    # -----------------------------------------------------------------------------------------------------------

    @hookspec
    async def carehub_telehealth_create_visit(self, context: PluginContext, visit: VisitRequest) -> VisitBooking:
        """Set up a video visit for a video appointment. Called in a worker after such an appointment is booked;
        the first enabled telehealth plugin's booking is stored on the appointment.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    @hookspec
    async def carehub_telehealth_cancel_visit(self, context: PluginContext, visit_id: str) -> None:
        """Cancel a visit set up by :func:`carehub_telehealth_create_visit`. Called in a worker after the
        appointment is cancelled; raise to be retried.

        .. versionadded:: 1.0
        """

    @hookspec
    async def carehub_telehealth_join_link(self, context: PluginContext, visit_id: str, participant: str) -> JoinLink:
        """A link for ``participant`` (``host`` or ``patient``) to join the visit. Called in a request when
        someone opens the appointment; the first result is used.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    # -----------------------------------------------------------------------------------------------------------
    # Transport
    # -----------------------------------------------------------------------------------------------------------

    @hookspec
    async def carehub_transport_quote(self, context: PluginContext, ride: RideRequest) -> Sequence[RideQuote]:
        """Offers for a ride. Called in a request when a coordinator asks for quotes; every enabled transport
        plugin's quotes are shown together.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    @hookspec
    async def carehub_transport_book(self, context: PluginContext, ride: RideRequest, quote_id: str) -> RideBooking:
        """Book the ride of ``quote_id`` (one of yours). Called in a worker; use ``ride.id`` as the idempotency
        key, since a retry calls again with the same ride.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    @hookspec
    async def carehub_transport_cancel(self, context: PluginContext, booking_id: str) -> RideBooking:
        """Cancel a booking of yours; return its new state. Called in a worker.

        .. versionadded:: 1.0
        """
        raise NotImplementedError

    @hookspec
    def carehub_transport_status_callback(
        self, context: PluginContext, body: bytes, headers: Mapping[str, str]
    ) -> RideStatus | None:
        """A provider called back about a ride (``POST /plugins/{name}/callback/{tenant}``). Check its signature
        with your secret from ``context.config`` and return the status, or None to refuse it (the caller gets
        401). Called synchronously in the request.

        .. versionadded:: 1.0
        """

    # -----------------------------------------------------------------------------------------------------------
    # Notification channels (operator-configured, network-wide)
    # -----------------------------------------------------------------------------------------------------------

    @hookspec
    def carehub_notification_channels(self, config: Mapping[str, str]) -> Sequence[Channel]:
        """The notification channels this plugin delivers through (email, SMS, push ...).

        ``config`` holds the operator's channel settings that this plugin's manifest names in
        ``operator_settings``: each ``CAREHUB_CHANNEL_<KEY>`` environment variable as ``<key>`` in lower case
        (``CAREHUB_CHANNEL_SMTP_HOST`` -> ``smtp_host``), and no other plugin's. Return an empty sequence when the
        settings your channel needs are absent; raise ``ValueError`` naming the key when one is present but wrong.
        In-app delivery is built in and always on. Called (synchronously) when a worker starts.

        .. versionadded:: 0.1
        """
        raise NotImplementedError


# What each hook must return, as the host checks it (msgspec types; None where the return value is not used).
RESULT_TYPES: dict[str, Any] = {
    "carehub_on_enable": None,
    "carehub_on_disable": None,
    "carehub_health_check": Health,
    "carehub_ehr_pull_patients": PullBatch,
    "carehub_ehr_pull_encounters": PullBatch,
    "carehub_ehr_pull_conditions": PullBatch,
    "carehub_ehr_pull_observations": PullBatch,
    "carehub_ehr_push_care_plan": PushResult,
    "carehub_ehr_push_task": PushResult,
    "carehub_inbound_message": InboundResult | None,
    "carehub_inbound_reply": str | None,
    "carehub_device_observations": list[AnyEffect],
    "carehub_directory_search": list[ServiceRecord],
    "carehub_telehealth_create_visit": VisitBooking,
    "carehub_telehealth_cancel_visit": None,
    "carehub_telehealth_join_link": JoinLink,
    "carehub_transport_quote": list[RideQuote],
    "carehub_transport_book": RideBooking,
    "carehub_transport_cancel": RideBooking,
    "carehub_transport_status_callback": RideStatus | None,
    "carehub_notification_channels": None,  # checked by the host: each a plugin_sdk.Channel
}
HOOK_NAMES = frozenset(name for name in vars(HookSpecs) if name.startswith("carehub_"))
# The pull hooks, in the order the host calls them (patients first: the others refer to them).
PULL_HOOKS = (
    "carehub_ehr_pull_patients",
    "carehub_ehr_pull_encounters",
    "carehub_ehr_pull_conditions",
    "carehub_ehr_pull_observations",
)
