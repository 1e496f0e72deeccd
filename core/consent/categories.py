"""The vocabulary of consent: data categories, purposes of use, and which roles may ask for which purpose."""

from __future__ import annotations

from datetime import timedelta

CATEGORIES = (
    "demographics",
    "care_plan",
    "tasks_appointments",
    "messages",
    "clinical_results",
    "behavioral_health",
    "substance_use_disorder",
    "social_needs",
)
PURPOSES = ("treatment", "care_coordination", "payment", "research")
# 42 CFR Part 2: shared only under a consent that names the recipient tenant, never by a default or a class.
PART2 = "substance_use_disorder"
# Categories a record can be labelled with instead of its type's own category.
SENSITIVE_LABELS = ("behavioral_health", "substance_use_disorder", "social_needs")

GRANTEE_KINDS = ("tenant", "treating", "network")
DECISIONS = ("permit", "deny")
STATUSES = ("active", "revoked", "expired")
SOURCE_KINDS = ("scanned_form", "portal", "verbal", "electronic")
NETWORK_DEFAULTS = ("opt_in", "opt_out")
# What the network default shares under opt-out: every category but Part 2 records, for these purposes.
DEFAULT_PURPOSES = ("treatment", "care_coordination")

# The roles that may read another tenant's records for each purpose of use.
ROLE_PURPOSES: dict[str, frozenset[str]] = {
    "treatment": frozenset({"clinician", "care_manager"}),
    "care_coordination": frozenset({"clinician", "care_manager", "chw", "partner_staff"}),
    "payment": frozenset({"tenant_admin"}),
    "research": frozenset({"tenant_admin"}),
}

# Break-the-glass: who may open it, for which purpose, which categories it opens, and for how long.
BREAK_GLASS_ROLES = frozenset({"clinician"})
BREAK_GLASS_PURPOSE = "treatment"
BREAK_GLASS_CATEGORIES = frozenset({"demographics", "care_plan", "tasks_appointments", "clinical_results"})
BREAK_GLASS_DURATION = timedelta(hours=4)

# The tenant kinds that count as "treating facilities" for a consent granted to that class.
TREATING_KINDS = frozenset({"hospital", "clinic"})
