"""People, passwords, invites, API tokens, pay and the cookie key, on a real SQLite file."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from terakoya.errors import DataError, StateError
from terakoya.people import accounts
from terakoya.storage.models import Person, utcnow
from terakoya.storage.web_models import ApiToken, Invite

from .conftest import PASSWORD, WebProject, exact, make_trainer


def test_owner_signs_in_by_email_or_name_and_the_password_is_hashed_with_argon2(project: WebProject) -> None:
    owner = accounts.create_owner(project.db, project.project_id, "Olga", "Olga@Example.org", PASSWORD)
    assert (owner.role, owner.email) == ("owner", "olga@example.org")
    with project.db.session() as s:
        stored = s.scalar(select(Person.password_hash).where(Person.id == owner.id))
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.authenticate(project.db, project.project_id, "olga@example.org", PASSWORD).id == owner.id
    assert accounts.authenticate(project.db, project.project_id, "Olga", PASSWORD).role == "owner"
    for login, password in (("Olga", "wrong password"), ("nobody@example.org", PASSWORD)):
        with pytest.raises(accounts.AuthError) as err:
            accounts.authenticate(project.db, project.project_id, login, password)
        assert err.value.message == "the email/name or the password is wrong; check both and try again"
    # running it again updates the password instead of failing
    accounts.create_owner(project.db, project.project_id, "Olga", "olga@example.org", "a new password")
    assert accounts.authenticate(project.db, project.project_id, "Olga", "a new password").id == owner.id


def test_create_user_refuses_bad_input_with_the_fix(project: WebProject) -> None:
    ok = {"name": "ann", "email": "ann@example.org", "password": PASSWORD}
    cases = [
        ({**ok, "password": "short"}, "the password is too short (5 characters); use at least 8"),
        ({**ok, "email": "not-an-email"}, "'not-an-email' is not an email address; write it as name@example.org"),
        ({**ok, "name": "  "}, "the name is empty; enter the name others will see"),
        (
            {**ok, "role": "trainer"},
            "trainers join by invite link; add an owner or a reviewer here (--role owner|reviewer)",
        ),
        ({**ok, "role": "boss"}, "role 'boss' is unknown; choose one of: trainer, reviewer, owner"),
    ]
    for kwargs, message in cases:
        with pytest.raises(DataError) as err:
            accounts.create_user(project.db, project.project_id, **kwargs)
        assert err.value.message == message
    reviewer = accounts.create_user(
        project.db, project.project_id, name="rita", email="rita@example.org", password=PASSWORD, role="reviewer"
    )
    assert reviewer.role == "reviewer"


def test_invite_link_creates_a_trainer_once(project: WebProject) -> None:
    invite, token = accounts.create_invite(
        project.db, project.project_id, project.settings, created_by=None, tags=["Finance"], days=2
    )
    assert (invite.role, invite.languages, invite.tags, invite.state) == ("trainer", ["en"], ["finance"], "open")
    with project.db.session() as s:
        assert s.scalar(select(Invite.token_hash)) != token  # only the hash is stored
    view, _, name = accounts.invite_for_token(project.db, token)
    assert (view.id, name) == (invite.id, "fin")
    with pytest.raises(DataError, match=r"^the password is too short"):
        accounts.accept_invite(project.db, token, name="tom", password="1234")
    tom = accounts.accept_invite(project.db, token, name="tom", password=PASSWORD, languages=["en, ja"])
    assert (tom.role, tom.languages) == ("trainer", ["en", "ja"])
    assert accounts.role_of(project.db, project.project_id, tom.id) == "trainer"
    with pytest.raises(StateError) as err:
        accounts.accept_invite(project.db, token, name="tim", password=PASSWORD)
    assert err.value.message == ("this invite link was already used; sign in, or ask the project owner for a new link")
    with pytest.raises(accounts.NotFound) as missing:
        accounts.invite_for_token(project.db, "made-up")
    assert missing.value.message == "this invite link is not valid; ask the project owner for a new one"
    assert [i.state for i in accounts.list_invites(project.db, project.project_id)] == ["used"]


def test_expired_revoked_and_addressed_invites(project: WebProject) -> None:
    old, old_token = accounts.create_invite(project.db, project.project_id, project.settings, created_by=None)
    with project.db.session() as s:
        s.execute(update(Invite).where(Invite.id == old.id).values(expires_at=utcnow() - timedelta(days=1)))
    with pytest.raises(StateError, match=exact("this invite link has expired; ask the project owner for a new one")):
        accounts.accept_invite(project.db, old_token, name="tom", password=PASSWORD)
    gone, gone_token = accounts.create_invite(project.db, project.project_id, project.settings, created_by=None)
    accounts.revoke_invite(project.db, project.project_id, gone.id)
    with pytest.raises(accounts.NotFound):
        accounts.accept_invite(project.db, gone_token, name="tom", password=PASSWORD)
    _, token = accounts.create_invite(
        project.db, project.project_id, project.settings, created_by=None, email="tom@example.org", role="reviewer"
    )
    with pytest.raises(DataError) as err:
        accounts.accept_invite(project.db, token, name="tom", password=PASSWORD, email="eve@example.org")
    assert err.value.message == (
        "this invite is for tom@example.org; use that address or ask the owner for an invite for yours"
    )
    tom = accounts.accept_invite(project.db, token, name="tom", password=PASSWORD)
    assert (tom.email, tom.role) == ("tom@example.org", "reviewer")
    with pytest.raises(DataError) as owner:
        accounts.create_invite(project.db, project.project_id, project.settings, created_by=None, role="owner")
    assert owner.value.message == "an invite makes a trainer or a reviewer; add owners with `terakoya user add`"
    with pytest.raises(DataError, match=r"^an invite must expire within 1 to 90 days"):
        accounts.create_invite(project.db, project.project_id, project.settings, created_by=None, days=365)


def test_names_are_unique_and_an_existing_person_can_join_another_project(project: WebProject) -> None:
    make_trainer(project, "tom")
    _, token = accounts.create_invite(project.db, project.project_id, project.settings, created_by=None)
    with pytest.raises(DataError) as err:
        accounts.accept_invite(project.db, token, name="tom", password=PASSWORD)
    assert err.value.message == (
        "an account with the name 'tom' already exists; choose another name, or sign in with that account"
    )
    other = project.db.project_id("other")
    _, other_token = accounts.create_invite(project.db, other, project.settings, created_by=None, role="reviewer")
    tom = accounts.authenticate(project.db, project.project_id, "tom", PASSWORD)
    joined = accounts.join_with_invite(project.db, other_token, tom.id)
    assert joined.role == "reviewer"
    assert {(c.name, c.role) for c in accounts.projects_for(project.db, tom.id)} == {
        ("fin", "trainer"),
        ("other", "reviewer"),
    }


def test_projects_are_listed_when_they_match_the_trainer_profile(project: WebProject) -> None:
    tom = make_trainer(project, "tom")  # invited for English
    ja = project.db.project_id("ja-news")
    _, token = accounts.create_invite(project.db, ja, project.settings, created_by=None, languages=["ja"], tags=["law"])
    accounts.join_with_invite(project.db, token, tom.id)
    accounts.update_profile(project.db, tom.id, tags=["finance"], languages=["en"])
    assert [c.name for c in accounts.projects_for(project.db, tom.id)] == ["fin"]
    accounts.update_profile(project.db, tom.id, tags=["law", "finance"], languages=["en", "JA"])
    assert [c.name for c in accounts.projects_for(project.db, tom.id)] == ["fin", "ja-news"]


def test_api_tokens_are_stored_hashed_and_can_be_revoked(project: WebProject) -> None:
    tom = make_trainer(project, "tom")
    view, token = accounts.create_api_token(project.db, tom.id, "laptop")
    assert token.startswith("tk_") and len(token) > 40
    with project.db.session() as s:
        assert s.scalar(select(ApiToken.token_hash)) != token
    assert accounts.person_for_token(project.db, token) == tom.id
    assert accounts.person_for_token(project.db, token + "x") is None
    assert [t.name for t in accounts.list_api_tokens(project.db, tom.id)] == ["laptop"]
    accounts.revoke_api_token(project.db, tom.id, view.id)
    assert accounts.person_for_token(project.db, token) is None
    with pytest.raises(accounts.NotFound, match=f"^API token {view.id + 1} does not exist among your tokens$"):
        accounts.revoke_api_token(project.db, tom.id, view.id + 1)


def test_pay_set_in_the_web_app_overrides_the_project_file(project: WebProject) -> None:
    assert accounts.current_pay(project.db, project.project_id, project.settings) == project.settings.pay
    pay = accounts.set_pay(project.db, project.project_id, project.settings, mode="per_hour", per_item=0, per_hour=30)
    assert (pay.mode, pay.per_hour, pay.currency) == ("per_hour", 30.0, "USD")
    assert accounts.current_pay(project.db, project.project_id, project.settings) == pay
    with pytest.raises(DataError) as err:
        accounts.set_pay(project.db, project.project_id, project.settings, mode="per_day", per_item=0, per_hour=30)
    assert err.value.message.startswith("pay is not valid — mode: Input should be 'per_item' or 'per_hour'")
    # the library refuses what the API and the form refuse: the limits live once, on PaySettings
    for bad in ({"per_item": float("inf")}, {"per_item": float("nan")}, {"per_hour": 2e6}, {"currency": "X" * 11}):
        with pytest.raises(DataError, match="amounts are from 0 to 1,000,000"):
            accounts.set_pay(
                project.db, project.project_id, project.settings, **{"mode": "per_item", "per_item": 0.1,
                                                                     "per_hour": 1.0, **bad}  # type: ignore[arg-type]
            )  # fmt: skip
    assert accounts.current_pay(project.db, project.project_id, project.settings) == pay


def test_the_cookie_key_is_made_once_per_project(project: WebProject) -> None:
    first = accounts.web_secret(project.db, project.project_id)
    assert len(first) == 64 and accounts.web_secret(project.db, project.project_id) == first
    assert accounts.web_secret(project.db, project.db.project_id("other")) != first


def test_roles_are_ordered() -> None:
    assert accounts.role_at_least("owner", "reviewer") and accounts.role_at_least("reviewer", "trainer")
    assert not accounts.role_at_least("trainer", "reviewer") and not accounts.role_at_least(None, "trainer")
