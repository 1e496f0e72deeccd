"""Event handlers by topic. A handler runs in the event's tenant, in one transaction with its receipt.

Every handler of the product is listed in :data:`SUBSCRIPTIONS`, and lives in the domain that owns what it does
(the appointments' rules in ``core.appointments.rules``, ...): this tuple is the one place to read which events
start what. Nothing registers itself by being imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from core.appointments import rules as appointments
from core.careplans import rules as careplans
from core.encounters import rules as encounters
from core.jobs import housekeeping
from core.jobs.events import Event, Handler, Subscription
from core.notify import delivery
from core.plugins import push as plugin_push
from core.plugins import sync as plugin_sync
from core.results import rules as results
from core.tasks import rules as tasks
from core.tasks.models import TASK_STATUSES

__all__ = ["HANDLERS", "SUBSCRIPTIONS", "Event", "Handler", "Subscription", "handler", "handlers_for", "on"]

SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription("appointment.noshow", "noshow-follow-up-task", appointments.noshow_follow_up),
    Subscription("schedule.appointment_reminders", "appointment-reminders", appointments.remind_appointments),
    Subscription("lab_result.critical_received", "critical-result-task", results.critical_result),
    Subscription("schedule.critical_results", "critical-result-escalation", results.escalate_unacknowledged),
    Subscription("result.acknowledged", "settle-result-alerts", results.settle_result_alerts),
    Subscription("care_plan.updated", "care-plan-change-alerts", careplans.care_plan_changed),
    Subscription("schedule.overdue_tasks", "overdue-task-escalation", tasks.escalate_overdue_tasks),
    Subscription("encounter.discharged", "transition-of-care-tasks", encounters.transition_of_care),
    Subscription("notification.queued", "send-notification", delivery.send_notification),
    Subscription("schedule.deferred_notifications", "release-deferred-notifications", delivery.release_deferred),
    Subscription("schedule.prune_outbox", "prune-outbox", housekeeping.prune_outbox),
    Subscription("schedule.plugin_sync", "plugin-ehr-sync", plugin_sync.sync_tenant),
    *(
        Subscription(t, "ehr-push-care-plan", plugin_push.push_care_plan)
        for t in ("care_plan.created", "care_plan.updated")
    ),
    # A task's creation, its changes an EHR shows and every status change; not its assignment or escalation.
    *(
        Subscription(topic, "ehr-push-task", plugin_push.push_task)
        for topic in ("task.created", "task.updated", *(f"task.{status}" for status in TASK_STATUSES))
    ),
)

# topic -> {handler name: handler}
HANDLERS: dict[str, dict[str, Handler]] = {}


def subscribe(subscriptions: Iterable[Subscription]) -> None:
    """Add handlers to the table (a name twice for one topic is a mistake: it would share receipts)."""
    for subscription in subscriptions:
        named = HANDLERS.setdefault(subscription.topic, {})
        if subscription.name in named:
            raise ValueError(f"handler {subscription.name} registered twice for {subscription.topic}")
        named[subscription.name] = subscription.handler


def on(topic: str, name: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler ``name`` of ``topic``: for handlers outside the product's list (the tests'
    and benchmarks' own)."""

    def register(fn: Handler) -> Handler:
        subscribe([Subscription(topic, name, fn)])
        return fn

    return register


def handlers_for(topic: str) -> list[str]:
    return sorted(HANDLERS.get(topic, {}))


def handler(topic: str, name: str) -> Handler:
    return HANDLERS[topic][name]


subscribe(SUBSCRIPTIONS)
