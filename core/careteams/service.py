"""A patient's care team: one per patient in a tenant, with staff and outside members and at most one lead."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import inputs, outbox, staff
from core.careteams.models import CareTeam, CareTeamMember
from core.careteams.schemas import CareTeamCreate, CareTeamOut, MemberIn, MemberOut, MemberUpdate
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound
from core.patients.service import require_patient
from core.principal import Principal
from core.records import Records

RESOURCE = "CareTeam"
CONTACT_IS_FOR_OUTSIDERS = "contact details are for outside members; staff are reached through carehub"
CARE_TEAMS: Records[CareTeam, CareTeamOut] = Records(
    model=CareTeam, resource_type=RESOURCE, permission="careteams", not_found="care team not found"
)


async def to_out(session: AsyncSession, team: CareTeam) -> CareTeamOut:
    users = await staff.names(session, (m.user_id for m in team.members))
    return CareTeamOut(
        id=team.id,
        patient_id=team.patient_id,
        name=team.name,
        status=team.status,
        members=[
            MemberOut(
                id=m.id,
                user_id=m.user_id,
                name=users.get(m.user_id, m.name) if m.user_id else m.name,
                organisation=m.organisation,
                phone=m.phone,
                email=m.email,
                role=m.role,
                is_lead=m.is_lead,
                external=m.user_id is None,
            )
            for m in team.members
        ],
        created_at=team.created_at,
        updated_at=team.updated_at,
    )


async def _member(session: AsyncSession, team: CareTeam, data: MemberIn, field: str) -> CareTeamMember:
    def at(name: str) -> str:
        return f"{field}.{name}" if field else name

    if (data.user_id is None) == (data.name is None):
        raise InvalidInput("give either user_id (a staff member) or name (an outside member)", field=field or "body")
    if data.user_id is not None:
        for contact in ("organisation", "phone", "email"):
            if getattr(data, contact) is not None:
                raise InvalidInput(CONTACT_IS_FOR_OUTSIDERS, field=at(contact))
        await staff.require_staff(session, data.user_id, at("user_id"))
        if any(m.user_id == data.user_id for m in team.members):
            raise Conflict("this user is already a member of the care team", field=at("user_id"))
    return CareTeamMember(
        id=uuid.uuid4(),
        user_id=data.user_id,
        name=data.name,
        organisation=data.organisation,
        phone=data.phone,
        email=data.email,
        role=data.role,
        is_lead=data.is_lead,
    )


def _one_lead(team: CareTeam, lead: CareTeamMember | None) -> None:
    """Making a member lead takes the lead from whoever had it."""
    if lead is not None and lead.is_lead:
        for member in team.members:
            if member is not lead:
                member.is_lead = False


def _changed(session: AsyncSession, principal: Principal, team: CareTeam, action: str, detail: dict[str, str]) -> None:
    team.updated_at = utcnow()
    CARE_TEAMS.audit(session, principal, team, action, **detail)
    outbox.emit(
        session,
        "care_team.updated",
        {"care_team_id": str(team.id), "patient_id": str(team.patient_id)},
        team.patient_id,
    )


async def create(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, data: CareTeamCreate
) -> CareTeamOut:
    principal.require("careteams", "write")
    patient = await require_patient(session, principal, patient_id, "care_team.create", active=True)
    if await session.scalar(select(CareTeam.id).where(CareTeam.patient_id == patient.id)) is not None:
        raise Conflict("this patient already has a care team: add members to it", field="patient_id", source="path")
    if sum(m.is_lead for m in data.members) > 1:
        raise InvalidInput("a care team has at most one lead", field="members")
    team = CareTeam(
        id=uuid.uuid4(),
        patient_id=patient.id,
        name=data.name or f"Care team of {patient.given_name} {patient.family_name}",
        members=[],
    )
    for index, member in enumerate(data.members):
        team.members.append(await _member(session, team, member, f"members[{index}]"))
    session.add(team)
    CARE_TEAMS.audit(session, principal, team, "care_team.create")
    outbox.emit(session, "care_team.created", {"care_team_id": str(team.id), "patient_id": str(patient.id)}, patient.id)
    await session.flush()
    return await to_out(session, team)


async def read(session: AsyncSession, principal: Principal, team_id: uuid.UUID) -> CareTeamOut:
    team = await CARE_TEAMS.get(session, principal, team_id, "care_team.read", need="read")
    CARE_TEAMS.audit(session, principal, team, "care_team.read")
    return await to_out(session, team)


async def for_patient(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> CareTeamOut:
    principal.require("careteams", "read")
    patient = await require_patient(session, principal, patient_id, "care_team.read")
    team = await session.scalar(select(CareTeam).where(CareTeam.patient_id == patient.id))
    if team is None:
        raise NotFound("this patient has no care team yet")
    CARE_TEAMS.audit(session, principal, team, "care_team.read")
    return await to_out(session, team)


async def add_member(session: AsyncSession, principal: Principal, team_id: uuid.UUID, data: MemberIn) -> CareTeamOut:
    team = await CARE_TEAMS.get(session, principal, team_id, "care_team.add_member", need="write")
    member = await _member(session, team, data, "")
    team.members.append(member)
    _one_lead(team, member)
    _changed(session, principal, team, "care_team.add_member", {"member_id": str(member.id), "role": member.role})
    await session.flush()
    return await to_out(session, team)


def _find(team: CareTeam, member_id: uuid.UUID) -> CareTeamMember:
    for member in team.members:
        if member.id == member_id:
            return member
    raise NotFound("care team member not found")


async def update_member(
    session: AsyncSession, principal: Principal, team_id: uuid.UUID, member_id: uuid.UUID, data: MemberUpdate
) -> CareTeamOut:
    team = await CARE_TEAMS.get(session, principal, team_id, "care_team.update_member", need="write")
    member = _find(team, member_id)
    given = inputs.given(data)
    if member.user_id is not None and any(f in given for f in ("organisation", "phone", "email")):
        contact = next(f for f in ("organisation", "phone", "email") if f in given)
        raise InvalidInput(CONTACT_IS_FOR_OUTSIDERS, field=contact)
    for field, value in given.items():
        setattr(member, field, value)
    _one_lead(team, member)
    _changed(session, principal, team, "care_team.update_member", {"member_id": str(member.id)})
    await session.flush()
    return await to_out(session, team)


async def remove_member(
    session: AsyncSession, principal: Principal, team_id: uuid.UUID, member_id: uuid.UUID
) -> CareTeamOut:
    team = await CARE_TEAMS.get(session, principal, team_id, "care_team.remove_member", need="write")
    member = _find(team, member_id)
    team.members.remove(member)
    _changed(session, principal, team, "care_team.remove_member", {"member_id": str(member.id)})
    await session.flush()
    return await to_out(session, team)
