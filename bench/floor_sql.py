"""The SQL carehub issues for each benchmarked request, statement by statement, in one transaction.

Captured from the API on PostgreSQL (SQLAlchemy's statement log) and written out by hand, without the type
casts the ORM adds: the floor apps in ``bench/floor.py`` run exactly these statements, so the difference
between carehub and its floor is everything carehub does that is not SQL. ``$n`` are positional parameters
(asyncpg's form; the SQLAlchemy Core variant renames them to ``:pn``).
"""

from __future__ import annotations

SET_TENANT = "SELECT set_config('app.tenant_id', $1, true), set_config('app.network_scope', $2, true)"

# The caller, re-read in the request's transaction (revocation acts on the next request).
PRINCIPAL = (
    "SELECT users.email, users.full_name, users.is_active, users.token_version, tenants.slug, tenants.status,"
    " tenants.tokens_valid_after, memberships.tokens_valid_after AS m_valid_after, memberships.roles,"
    " memberships.patient_id, users.id, memberships.tenant_id"
    " FROM users JOIN memberships ON memberships.user_id = users.id AND memberships.tenant_id = $1"
    " JOIN tenants ON tenants.id = memberships.tenant_id"
    " WHERE users.id = $2 AND memberships.tenant_id = $1 AND memberships.is_active IS true"
)

AUDIT_COLUMNS = (
    "at, actor_user_id, actor_roles, patient_id, action, resource_type, resource_id, outcome, reason, detail,"
    " id, tenant_id"
)
OUTBOX_INSERT = (
    "INSERT INTO outbox_events (topic, aggregate_id, payload, created_at, published_at, attempts, id, tenant_id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)

_PATIENT_COLUMNS = (
    "patients.mrn, patients.given_name, patients.family_name, patients.birth_date, patients.sex, patients.phone,"
    " patients.email, patients.address, patients.language, patients.active, patients.deactivated_at, patients.id,"
    " patients.created_at, patients.updated_at, patients.tenant_id"
)
# The f-strings below join constant text only (no input reaches them).
# The patient and its identifiers in one statement (the patient read's rows: one per identifier).
PATIENT_WITH_IDENTIFIERS = (
    f"SELECT {_PATIENT_COLUMNS}, patient_identifiers.system AS identifier_system,"  # noqa: S608
    " patient_identifiers.value AS identifier_value"
    " FROM patients LEFT OUTER JOIN patient_identifiers ON patient_identifiers.patient_id = patients.id"
    " AND patient_identifiers.tenant_id = patients.tenant_id AND patient_identifiers.tenant_id = $2"
    " WHERE patients.id = $1 AND patients.tenant_id = $2 ORDER BY patient_identifiers.system"
)
PATIENT_PAGE = (
    f"SELECT {_PATIENT_COLUMNS} FROM patients WHERE patients.active IS true AND patients.tenant_id = $1"  # noqa: S608
    " ORDER BY patients.family_name, patients.given_name, patients.id LIMIT $2 OFFSET $3"
)
# ``$1`` is a uuid[]: one statement for any number of patients (the record loader's collection query).
IDENTIFIERS_OF = (
    "SELECT patient_identifiers.patient_id, patient_identifiers.system, patient_identifiers.value,"
    " patient_identifiers.id, patient_identifiers.tenant_id FROM patient_identifiers"
    " WHERE patient_identifiers.patient_id = ANY($1) AND patient_identifiers.tenant_id = $2"
    " ORDER BY patient_identifiers.system"
)
PATIENT_BY_MRN = "SELECT patients.id FROM patients WHERE patients.mrn = $1 AND patients.tenant_id = $2"
PATIENT_INSERT = (
    "INSERT INTO patients (mrn, given_name, family_name, birth_date, sex, phone, email, address, language, active,"
    " deactivated_at, id, created_at, updated_at, tenant_id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
)
NETWORK_OF_TENANT = (
    "SELECT networks.id, networks.link_systems FROM networks JOIN tenants ON tenants.network_id = networks.id"
    " WHERE tenants.id = $1"
)
PERSON_INSERT = "INSERT INTO persons (network_id, created_at, id) VALUES ($1, $2, $3)"
LINK_INSERT = (
    "INSERT INTO patient_links (tenant_id, patient_id, person_id, method, linked_by, linked_at, given_key,"
    " family_key, birth_date, sex, postal_code, primary_care, id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
)

TASKS_MINE = (
    "SELECT tasks.patient_id, tasks.care_plan_id, tasks.title, tasks.description, tasks.template_code,"
    " tasks.owner_id, tasks.assignee_id, tasks.for_patient, tasks.due_at, tasks.priority, tasks.status,"
    " tasks.status_reason, tasks.escalation_level, tasks.data_category, tasks.completed_at, tasks.created_by,"
    " tasks.id, tasks.created_at, tasks.updated_at, tasks.tenant_id, patients.given_name, patients.family_name"
    " FROM tasks JOIN patients ON patients.id = tasks.patient_id AND patients.tenant_id = $1"
    " WHERE (tasks.owner_id = $2 OR tasks.assignee_id = $2)"
    " AND tasks.status IN ('requested', 'accepted', 'in_progress') AND tasks.tenant_id = $1"
    " ORDER BY tasks.due_at IS NULL, tasks.due_at, CASE tasks.priority WHEN 'stat' THEN 0 WHEN 'asap' THEN 1"
    " WHEN 'urgent' THEN 2 WHEN 'routine' THEN 3 ELSE 4 END, tasks.created_at, tasks.id LIMIT $3 OFFSET $4"
)

CARE_PLAN = (
    "SELECT care_plans.patient_id, care_plans.template_id, care_plans.title, care_plans.description,"
    " care_plans.status, care_plans.period_start, care_plans.period_end, care_plans.structured,"
    " care_plans.staff_note, care_plans.data_category, care_plans.version, care_plans.author_id, care_plans.id,"
    " care_plans.created_at, care_plans.updated_at, care_plans.tenant_id"
    " FROM care_plans WHERE care_plans.id = $1 AND care_plans.tenant_id = $2"
)
# ``$1`` is a uuid[] of plan ids (the record loader's collection queries).
CARE_PLAN_GOALS = (
    "SELECT care_plan_goals.plan_id, care_plan_goals.description, care_plan_goals.measure,"
    " care_plan_goals.target_value, care_plan_goals.due_date, care_plan_goals.lifecycle_status,"
    " care_plan_goals.achievement_status, care_plan_goals.id, care_plan_goals.created_at,"
    " care_plan_goals.updated_at, care_plan_goals.tenant_id FROM care_plan_goals"
    " WHERE care_plan_goals.plan_id = ANY($1) AND care_plan_goals.tenant_id = $2 ORDER BY care_plan_goals.created_at"
)
CARE_PLAN_ACTIVITIES = (
    "SELECT care_plan_activities.plan_id, care_plan_activities.kind, care_plan_activities.description,"
    " care_plan_activities.status, care_plan_activities.task_id, care_plan_activities.appointment_id,"
    " care_plan_activities.id, care_plan_activities.created_at, care_plan_activities.updated_at,"
    " care_plan_activities.tenant_id FROM care_plan_activities"
    " WHERE care_plan_activities.plan_id = ANY($1) AND care_plan_activities.tenant_id = $2"
    " ORDER BY care_plan_activities.created_at"
)

THREAD = (
    "SELECT threads.patient_id, threads.subject, threads.created_by, threads.created_at, threads.last_message_at,"
    " threads.data_category, threads.id, threads.tenant_id FROM threads"
    " WHERE threads.id = $1 AND threads.tenant_id = $2"
)
THREAD_PARTICIPANTS = (
    "SELECT thread_participants.thread_id, thread_participants.user_id, thread_participants.is_patient,"
    " thread_participants.added_at, thread_participants.id, thread_participants.tenant_id FROM thread_participants"
    " WHERE thread_participants.thread_id = $2 AND thread_participants.tenant_id = $1"
    " ORDER BY thread_participants.added_at, thread_participants.id"
)
MESSAGE_INSERT = (
    "INSERT INTO messages (thread_id, original_id, version, author_participant_id, body, deleted, sent_at, id,"
    " tenant_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
THREAD_TOUCH = "UPDATE threads SET last_message_at = $1 WHERE threads.id = $2"
ACTIVE_STAFF = (
    "SELECT memberships.user_id FROM memberships WHERE memberships.user_id = ANY($2)"
    " AND memberships.is_active IS true AND memberships.patient_id IS NULL AND memberships.tenant_id = $1"
)
MESSAGE_ATTACHMENTS = (
    "SELECT message_attachments.message_id, message_attachments.name, message_attachments.content_type,"
    " message_attachments.size, message_attachments.sha256, message_attachments.blob_key, message_attachments.id,"
    " message_attachments.tenant_id FROM message_attachments"
    " WHERE message_attachments.message_id = $2 AND message_attachments.tenant_id = $1"
    " ORDER BY message_attachments.name, message_attachments.id"
)
MESSAGE_RECEIPTS = (
    "SELECT message_receipts.message_original_id, message_receipts.participant_id, message_receipts.read_at,"
    " message_receipts.id, message_receipts.tenant_id FROM message_receipts"
    " WHERE message_receipts.message_original_id = $2 AND message_receipts.tenant_id = $1"
    " ORDER BY message_receipts.read_at, message_receipts.id"
)
USER_NAMES = (
    "SELECT users.id, users.full_name FROM users"
    " JOIN memberships ON memberships.user_id = users.id AND memberships.tenant_id = $1 WHERE users.id = ANY($2)"
)


# A request's audit events: this statement once per event, sent together (the driver's executemany).
AUDIT_INSERT = f"INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES ({', '.join(f'${n}' for n in range(1, 13))})"  # noqa: S608
