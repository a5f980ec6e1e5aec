"""People and their access: owners, reviewers and trainers; passwords, invites, API tokens and pay.

A person is one row of ``people`` (shared by every project in the database); what they may do in a project
is their :class:`~terakoya.storage.web_models.Membership` role there:

    trainer    works the queue, teaches glossary terms, sees their own time and earnings
    reviewer   a trainer who also sees the dashboard and approves glossary terms
    owner      everything: invites people, sets pay, runs jobs

Passwords are hashed with argon2; invite links and API tokens are random and only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from terakoya.errors import (
    AuthError,
    ConfigError,
    DataError,
    Forbidden,
    MissingDependency,
    NotFound,
    RateLimited,
    StateError,
)
from terakoya.settings import MAX_CURRENCY, MAX_PAY, PaySettings, Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Person, Project, utcnow
from terakoya.storage.web_models import ApiToken, Invite, Membership, PayRate, WebSecret, WebSession

__all__ = [
    "NAME_MAX",
    "ROLES",
    "SIMULATED_PERSON",
    "Account",
    "AuthError",
    "Forbidden",
    "InviteView",
    "MemberView",
    "NotFound",
    "ProjectCard",
    "RateLimited",
    "TokenView",
    "accept_invite",
    "account_for_token",
    "add_member",
    "authenticate",
    "create_api_token",
    "create_invite",
    "create_owner",
    "create_user",
    "current_pay",
    "end_web_session",
    "get_account",
    "get_or_create_person",
    "hash_password",
    "invite_for_token",
    "join_with_invite",
    "list_api_tokens",
    "list_invites",
    "list_members",
    "normal_name",
    "person_for_token",
    "projects_for",
    "revoke_api_token",
    "revoke_invite",
    "role_at_least",
    "role_of",
    "set_pay",
    "start_web_session",
    "update_profile",
    "verify_password",
    "web_secret",
]


def _rowcount(result: Any) -> int:
    """Rows changed by an UPDATE (``Session.execute`` types its result as a plain Result)."""
    return int(result.rowcount or 0)


#: roles, from least to most powerful; each role may do everything the ones before it may
ROLES: tuple[str, ...] = ("trainer", "reviewer", "owner")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
#: the longest name a person may have (the column's width); names typed at sign-up are kept to 100
NAME_MAX = 200
#: the name simulated answers are recorded under unless another is given
SIMULATED_PERSON = "simulated-expert"
TOKEN_PREFIX = "tk_"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_TOKEN_TOUCH = timedelta(minutes=10)


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    email: str | None
    role: str | None  # role in the project asked about; None when not a member
    tags: list[str]
    languages: list[str]


@dataclass(frozen=True)
class InviteView:
    id: int
    role: str
    email: str | None
    note: str
    tags: list[str]
    languages: list[str]
    expires_at: datetime
    used_at: datetime | None
    used_by_name: str | None
    revoked: bool
    created_at: datetime

    @property
    def state(self) -> str:
        if self.revoked:
            return "revoked"
        if self.used_at is not None:
            return "used"
        if self.expires_at <= utcnow():
            return "expired"
        return "open"


@dataclass(frozen=True)
class MemberView:
    person_id: int
    name: str
    email: str | None
    role: str
    tags: list[str]
    languages: list[str]
    joined_at: datetime


@dataclass(frozen=True)
class TokenView:
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class ProjectCard:
    project_id: int
    name: str
    role: str
    tags: list[str]
    languages: list[str]


# ----------------------------------------------------------------------------- passwords


@lru_cache(maxsize=1)
def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ModuleNotFoundError as exc:  # pragma: no cover - part of the web extra
        raise MissingDependency.for_extra("argon2-cffi", "web", "password hashing") from exc
    return PasswordHasher()


def hash_password(password: str) -> str:
    _check_password(password)
    return str(_hasher().hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # verified against when the account does not exist, so both cases take the same time
    return str(_hasher().hash(secrets.token_hex(16)))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise DataError(f"the password is too short ({len(password)} characters); use at least {MIN_PASSWORD}")
    if len(password) > MAX_PASSWORD:
        raise DataError(f"the password is longer than {MAX_PASSWORD} characters; use a shorter one")


def normal_name(name: str) -> str:
    """A person's name as it is stored and looked up: trimmed, every run of whitespace inside made one space.

    Accounts, answer files, simulated experts and sign-in all go through it, so "Ann  Smith" is "Ann Smith".
    """
    return " ".join(name.split())


def _clean_name(name: str) -> str:
    name = normal_name(name)
    if not name:
        raise DataError("the name is empty; enter the name others will see")
    if len(name) > 100:
        raise DataError(f"the name is {len(name)} characters long; keep it to 100")
    return name


def _clean_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 300:
        raise DataError(f"{email!r} is not an email address; write it as name@example.org")
    return email


def _clean_list(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip().lower()
            if part and part not in out:
                out.append(part[:50])
    return out


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise DataError(f"role {role!r} is unknown; choose one of: {', '.join(ROLES)}")
    return role


def role_at_least(role: str | None, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (owner > reviewer > trainer)."""
    return role is not None and role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ----------------------------------------------------------------------------- people and roles


def _new_person(name: str, email: str | None, password_hash: str, role: str) -> Person:
    """A person who signs in (``create_user``, ``accept_invite``): checked name and email, hashed password."""
    return Person(name=name, email=email, role=role, password_hash=password_hash, tags=[], languages=[])


def get_or_create_person(session: Session, name: str, *, simulated: bool = False) -> Person:
    """The person called ``name`` (:func:`normal_name`), created on first use, without a password: who gave the
    answers of an answer file, or a simulated expert. A simulated and a real person never share a name."""
    name = normal_name(name)
    if not name:
        raise DataError("a person's name is empty; give every answer the name of who gave it")
    if len(name) > NAME_MAX:
        raise DataError(f"the person's name {name[:40]!r}… is longer than {NAME_MAX} characters; shorten it")
    person: Person | None = session.scalar(select(Person).where(Person.name == name))
    if person is None:
        try:
            with session.begin_nested():  # another process may create the same person at the same moment
                person = Person(name=name, simulated=simulated)
                session.add(person)
        except IntegrityError:
            person = session.scalars(select(Person).where(Person.name == name)).one()
    assert person is not None
    if person.simulated and not simulated:
        raise DataError(
            f"{name!r} is the name of a simulated expert; record a person's answers under that person's own name"
        )
    if simulated and not person.simulated:
        raise ConfigError(
            f"{name!r} is a real person; simulated answers need a name of their own, e.g. {SIMULATED_PERSON!r}"
        )
    return person


def _taken_message(name: str, email: str | None) -> str:
    return (
        f"an account with the name {name!r}"
        + (f" or the email {email!r}" if email else "")
        + " already exists; choose another name, or sign in with that account"
    )


def create_owner(db: Database, project_id: int, name: str, email: str, password: str) -> Account:
    """Create a person who owns the project; an existing account (same name or email) is made owner."""
    return create_user(db, project_id, name=name, email=email, password=password, role="owner")


def create_user(db: Database, project_id: int, *, name: str, email: str, password: str, role: str = "owner") -> Account:
    """Create (or update) a person who signs in with email and password, with ``role`` in the project.

    For ``terakoya user add``: owners and reviewers are added this way, trainers join by invite link.
    An existing account with this name or email gets the new password and the role.
    """
    if _check_role(role) == "trainer":
        raise DataError("trainers join by invite link; add an owner or a reviewer here (--role owner|reviewer)")
    name, clean_email = _clean_name(name), _clean_email(email)
    if clean_email is None:
        raise DataError(f"the {role} needs an email address to sign in with; pass --email name@example.org")
    password_hash = hash_password(password)
    try:
        with db.session() as s:
            if s.get(Project, project_id) is None:
                raise NotFound(f"project {project_id} does not exist; run `terakoya init` first")
            person = s.scalar(select(Person).where((Person.email == clean_email) | (Person.name == name)))
            if person is None:
                person = _new_person(name, clean_email, password_hash, role)
                s.add(person)
            else:
                person.password_hash = password_hash
            s.flush()
            _upsert_membership(s, project_id, person.id, role, [], [])
            s.flush()
            found = s.scalar(
                select(Membership.role).where(Membership.project_id == project_id, Membership.person_id == person.id)
            )
            return _account(person, found)
    except IntegrityError as exc:
        raise DataError(_taken_message(name, clean_email)) from exc


def add_member(
    db: Database,
    project_id: int,
    person_id: int,
    role: str,
    *,
    tags: Sequence[str] = (),
    languages: Sequence[str] = (),
) -> None:
    """Give an existing person a role in a project (or change it)."""
    _check_role(role)
    with db.session() as s:
        if s.get(Person, person_id) is None:
            raise NotFound(f"person {person_id} does not exist")
        _upsert_membership(s, project_id, person_id, role, _clean_list(tags), _clean_list(languages))


def _upsert_membership(s: Any, project_id: int, person_id: int, role: str, tags: list[str], langs: list[str]) -> None:
    found = s.scalar(select(Membership).where(Membership.project_id == project_id, Membership.person_id == person_id))
    if found is None:
        s.add(Membership(project_id=project_id, person_id=person_id, role=role, tags=tags, languages=langs))
    else:
        # joining again never lowers a role
        if ROLES.index(role) > ROLES.index(found.role):
            found.role = role
        found.tags, found.languages = tags or found.tags, langs or found.languages


def _account(person: Person, role: str | None) -> Account:
    return Account(person.id, person.name, person.email, role, list(person.tags or []), list(person.languages or []))


def role_of(db: Database, project_id: int, person_id: int) -> str | None:
    with db.session() as s:
        return s.scalar(
            select(Membership.role).where(Membership.project_id == project_id, Membership.person_id == person_id)
        )


def get_account(db: Database, project_id: int, person_id: int, *, session_token: str | None = None) -> Account | None:
    """The person with their role in ``project_id`` (role None when not a member); None when no such person.

    With ``session_token``, only while that web session of theirs is live (not signed out): one query serves
    the check and the account on every signed-in request.
    """
    query = (
        select(Person, Membership.role)
        .outerjoin(Membership, (Membership.person_id == Person.id) & (Membership.project_id == project_id))
        .where(Person.id == person_id)
    )
    if session_token is not None:
        query = query.join(WebSession, WebSession.person_id == Person.id).where(
            WebSession.token_hash == _hash_token(session_token), WebSession.revoked_at.is_(None)
        )
    with db.session() as s:
        row = s.execute(query).first()
        if row is None:
            return None
        return _account(row[0], row[1])


def authenticate(db: Database, project_id: int, login: str, password: str) -> Account:
    """The account whose email or name is ``login``, if the password matches; else :class:`AuthError`."""
    login = login.strip()
    wrong = AuthError("the email/name or the password is wrong; check both and try again")
    if not login or not password:
        raise AuthError("enter your email (or name) and your password")
    if len(password) > MAX_PASSWORD or len(login) > 320 or "\x00" in login:
        raise wrong  # no account has one this long (or with a NUL, which no database holds): not worth hashing
    with db.session() as s:
        person = s.scalar(select(Person).where((Person.email == login.lower()) | (Person.name == normal_name(login))))
        stored = person.password_hash if person is not None else None
    if person is None or stored is None:
        verify_password(_dummy_hash(), password)
        raise wrong
    if not verify_password(stored, password):
        raise wrong
    if _hasher().check_needs_rehash(stored):
        with db.session() as s:
            s.execute(update(Person).where(Person.id == person.id).values(password_hash=hash_password(password)))
    account = get_account(db, project_id, person.id)
    assert account is not None
    return account


def update_profile(db: Database, person_id: int, *, tags: Sequence[str], languages: Sequence[str]) -> None:
    with db.session() as s:
        person = s.get(Person, person_id)
        if person is None:
            raise NotFound(f"person {person_id} does not exist")
        person.tags, person.languages = _clean_list(tags), _clean_list(languages)


def list_members(db: Database, project_id: int) -> list[MemberView]:
    with db.session() as s:
        rows = s.execute(
            select(Person, Membership)
            .join(Membership, Membership.person_id == Person.id)
            .where(Membership.project_id == project_id)
            .order_by(Membership.id)
        ).all()
        return [
            MemberView(p.id, p.name, p.email, m.role, list(p.tags or []), list(p.languages or []), m.created_at)
            for p, m in rows
        ]


def projects_for(db: Database, person_id: int) -> list[ProjectCard]:
    """The projects this person was invited to whose needs match their profile.

    A project matches when it asks for no languages or shares one with the person (and likewise for tags);
    a person who has not filled in languages or tags is not filtered on them.
    """
    with db.session() as s:
        person = s.get(Person, person_id)
        if person is None:
            return []
        mine_l, mine_t = set(person.languages or []), set(person.tags or [])
        rows = s.execute(
            select(Project, Membership)
            .join(Membership, Membership.project_id == Project.id)
            .where(Membership.person_id == person_id)
            .order_by(Project.name)
        ).all()
    cards = []
    for project, m in rows:
        need_l, need_t = set(m.languages or []), set(m.tags or [])
        fits = m.role != "trainer" or (
            (not need_l or not mine_l or bool(need_l & mine_l)) and (not need_t or not mine_t or bool(need_t & mine_t))
        )
        if fits:
            cards.append(ProjectCard(project.id, project.name, m.role, sorted(need_t), sorted(need_l)))
    return cards


# ----------------------------------------------------------------------------- invites


def _invite_view(invite: Invite, used_by_name: str | None) -> InviteView:
    return InviteView(
        invite.id,
        invite.role,
        invite.email,
        invite.note,
        list(invite.tags or []),
        list(invite.languages or []),
        invite.expires_at,
        invite.used_at,
        used_by_name,
        invite.revoked,
        invite.created_at,
    )


def create_invite(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    created_by: int | None,
    role: str = "trainer",
    email: str | None = None,
    note: str = "",
    tags: Sequence[str] = (),
    languages: Sequence[str] | None = None,
    days: float = 7.0,
) -> tuple[InviteView, str]:
    """A new invite and its secret token (shown once; only its hash is stored).

    ``languages`` defaults to the project's language; the link is ``/invite/<token>``.
    """
    _check_role(role)
    if role == "owner":
        raise DataError("an invite makes a trainer or a reviewer; add owners with `terakoya user add`")
    if not 0 < days <= 90:
        raise DataError(f"an invite must expire within 1 to 90 days (got {days:g}); pick a value in that range")
    token = secrets.token_urlsafe(24)
    invite = Invite(
        project_id=project_id,
        token_hash=_hash_token(token),
        role=role,
        email=_clean_email(email),
        note=note.strip()[:300],
        tags=_clean_list(tags),
        languages=_clean_list([settings.language] if languages is None else languages),
        created_by=created_by,
        expires_at=utcnow() + timedelta(days=days),
        revoked=False,
    )
    with db.session() as s:
        s.add(invite)
        s.flush()
        return _invite_view(invite, None), token


def list_invites(db: Database, project_id: int) -> list[InviteView]:
    with db.session() as s:
        rows = s.execute(
            select(Invite, Person.name)
            .outerjoin(Person, Person.id == Invite.used_by)
            .where(Invite.project_id == project_id)
            .order_by(Invite.id.desc())
        ).all()
        return [_invite_view(i, n) for i, n in rows]


def revoke_invite(db: Database, project_id: int, invite_id: int) -> None:
    with db.session() as s:
        invite = s.get(Invite, invite_id)
        if invite is None or invite.project_id != project_id:
            raise NotFound(f"invite {invite_id} does not exist in this project")
        invite.revoked = True


def _open_invite(s: Any, token: str) -> Invite:
    invite: Invite | None = s.scalar(select(Invite).where(Invite.token_hash == _hash_token(token)))
    if invite is None or invite.revoked:
        raise NotFound("this invite link is not valid; ask the project owner for a new one")
    if invite.used_at is not None:
        raise StateError("this invite link was already used; sign in, or ask the project owner for a new link")
    if invite.expires_at <= utcnow():
        raise StateError("this invite link has expired; ask the project owner for a new one")
    return invite


def invite_for_token(db: Database, token: str) -> tuple[InviteView, int, str]:
    """The open invite behind ``token``, with its project id and name; errors say why it cannot be used."""
    with db.session() as s:
        invite = _open_invite(s, token)
        project = s.get(Project, invite.project_id)
        assert project is not None
        return _invite_view(invite, None), project.id, project.name


def _use_invite(s: Any, token: str, person: Person) -> Invite:
    invite = _open_invite(s, token)
    claimed = s.execute(
        update(Invite)
        .where(Invite.id == invite.id, Invite.used_at.is_(None))
        .values(used_at=utcnow(), used_by=person.id)
    )
    if _rowcount(claimed) != 1:  # someone else used it at the same moment
        raise StateError("this invite link was already used; ask the project owner for a new link")
    _upsert_membership(s, invite.project_id, person.id, invite.role, list(invite.tags), list(invite.languages))
    return invite


def accept_invite(
    db: Database,
    token: str,
    *,
    name: str,
    password: str,
    email: str | None = None,
    tags: Sequence[str] = (),
    languages: Sequence[str] = (),
) -> Account:
    """Create an account from an invite link; the person joins the invite's project with its role."""
    name, clean_email = _clean_name(name), _clean_email(email)
    _check_password(password)
    try:
        with db.session() as s:
            invite = _open_invite(s, token)
            if invite.email and clean_email and invite.email != clean_email:
                raise DataError(
                    f"this invite is for {invite.email}; use that address or ask the owner for an invite for yours"
                )
            taken = s.scalar(
                select(func.count())
                .select_from(Person)
                .where(
                    (Person.name == name)
                    | ((Person.email == (clean_email or invite.email)) & (Person.email.isnot(None)))
                )
            )
            if taken:
                raise DataError(_taken_message(name, clean_email or invite.email))
            person = _new_person(name, clean_email or invite.email, hash_password(password), invite.role)
            person.tags, person.languages = _clean_list(tags), _clean_list(languages or invite.languages)
            s.add(person)
            s.flush()
            used = _use_invite(s, token, person)
            return _account(person, used.role)
    except IntegrityError as exc:
        raise DataError(_taken_message(name, clean_email)) from exc


def join_with_invite(db: Database, token: str, person_id: int) -> Account:
    """A signed-in person joins the invite's project with their existing account."""
    with db.session() as s:
        person = s.get(Person, person_id)
        if person is None:
            raise NotFound(f"person {person_id} does not exist")
        invite = _use_invite(s, token, person)
        role = s.scalar(
            select(Membership.role).where(Membership.project_id == invite.project_id, Membership.person_id == person_id)
        )
        return _account(person, role)


# ----------------------------------------------------------------------------- API tokens


def create_api_token(db: Database, person_id: int, name: str = "") -> tuple[TokenView, str]:
    """A new Bearer token for scripts; the secret is returned once and only its hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(person_id=person_id, token_hash=_hash_token(token), name=name.strip()[:100], revoked=False)
    with db.session() as s:
        if s.get(Person, person_id) is None:
            raise NotFound(f"person {person_id} does not exist")
        s.add(row)
        s.flush()
        return TokenView(row.id, row.name, row.created_at, None), token


def person_for_token(db: Database, token: str) -> int | None:
    """The person a Bearer token belongs to, or None when it is unknown or revoked."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with db.session() as s:
        row = s.execute(
            select(ApiToken.id, ApiToken.person_id, ApiToken.last_used_at).where(
                ApiToken.token_hash == _hash_token(token), ApiToken.revoked.is_(False)
            )
        ).first()
        if row is None:
            return None
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > _TOKEN_TOUCH:  # not a write on every request
            s.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
        return int(row.person_id)


def start_web_session(db: Database, person_id: int) -> str:
    """A new signed-in browser for this person; the token goes into the (signed) session cookie."""
    token = secrets.token_urlsafe(24)
    with db.session() as s:
        s.add(WebSession(person_id=person_id, token_hash=_hash_token(token)))
    return token


def end_web_session(db: Database, token: str) -> None:
    """Sign a browser out on the server: its cookie opens nothing afterwards."""
    with db.session() as s:
        s.execute(
            update(WebSession)
            .where(WebSession.token_hash == _hash_token(token), WebSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )


def account_for_token(db: Database, project_id: int, token: str) -> Account | None:
    """The account (with its role in ``project_id``) behind a Bearer token, in one query; None when invalid."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with db.session() as s:
        row = s.execute(
            select(ApiToken.id, ApiToken.last_used_at, Person, Membership.role)
            .join(Person, Person.id == ApiToken.person_id)
            .outerjoin(Membership, (Membership.person_id == Person.id) & (Membership.project_id == project_id))
            .where(ApiToken.token_hash == _hash_token(token), ApiToken.revoked.is_(False))
        ).first()
        if row is None:
            return None
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > _TOKEN_TOUCH:  # not a write on every request
            s.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
        return _account(row.Person, row.role)


def list_api_tokens(db: Database, person_id: int) -> list[TokenView]:
    with db.session() as s:
        rows = s.scalars(
            select(ApiToken).where(ApiToken.person_id == person_id, ApiToken.revoked.is_(False)).order_by(ApiToken.id)
        ).all()
        return [TokenView(r.id, r.name, r.created_at, r.last_used_at) for r in rows]


def revoke_api_token(db: Database, person_id: int, token_id: int) -> None:
    with db.session() as s:
        done = s.execute(
            update(ApiToken).where(ApiToken.id == token_id, ApiToken.person_id == person_id).values(revoked=True)
        )
        if _rowcount(done) != 1:
            raise NotFound(f"API token {token_id} does not exist among your tokens")


# ----------------------------------------------------------------------------- pay and secrets


def current_pay(db: Database, project_id: int, settings: Settings) -> PaySettings:
    """The pay in force: the newest rate set in the web app, else ``settings.pay``."""
    with db.session() as s:
        row = s.scalar(select(PayRate).where(PayRate.project_id == project_id).order_by(PayRate.id.desc()).limit(1))
    if row is None:
        return settings.pay
    return PaySettings(mode=row.mode, per_item=row.per_item, per_hour=row.per_hour, currency=row.currency)


def set_pay(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    mode: str,
    per_item: float,
    per_hour: float,
    currency: str | None = None,
    set_by: int | None = None,
) -> PaySettings:
    """Set how trainers are paid from now on (kept in the database; overrides ``[pay]`` in terakoya.toml)."""
    from pydantic import ValidationError

    try:
        pay = PaySettings(
            mode=mode,
            per_item=per_item,
            per_hour=per_hour,
            currency=(currency or settings.pay.currency).strip().upper(),
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DataError(
            f"pay is not valid — {problems}; mode is per_item or per_hour, amounts are from 0 to {MAX_PAY:,.0f}, "
            f"the currency a code of at most {MAX_CURRENCY} characters"
        ) from exc
    with db.session() as s:
        s.add(
            PayRate(
                project_id=project_id,
                mode=pay.mode,
                per_item=pay.per_item,
                per_hour=pay.per_hour,
                currency=pay.currency,
                set_by=set_by,
            )
        )
    return pay


def web_secret(db: Database, project_id: int) -> str:
    """The key that signs this project's session cookies: generated on first use and kept in the database."""
    with db.session() as s:
        found = s.get(WebSecret, project_id)
        if found is not None:
            return found.secret
    try:
        with db.session() as s:
            s.add(WebSecret(project_id=project_id, secret=secrets.token_hex(32)))
    except IntegrityError:
        pass  # another process generated it first; use theirs
    with db.session() as s:
        found = s.get(WebSecret, project_id)
        if found is None:
            raise ConfigError(f"project {project_id} does not exist in {db.safe_url}; check --db and --project")
        return found.secret
