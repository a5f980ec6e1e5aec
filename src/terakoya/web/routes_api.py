"""The JSON API (/api/v1): the same operations as the pages, for the queue page's script and for scripts.

Authenticate with ``Authorization: Bearer <token>`` (scripts) or the session cookie plus ``X-CSRF-Token``
(the web page). Errors are always ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from terakoya import dashboard, jobs, workqueue
from terakoya.errors import DataError, StateError
from terakoya.people import accounts, glossary, payouts
from terakoya.quality import review
from terakoya.quality.gold import lift_pause
from terakoya.quality.provenance import Provenance, provenance
from terakoya.quality.summary import QualitySummary, quality_summary
from terakoya.settings import MAX_CURRENCY, MAX_PAY, PaySettings
from terakoya.web.routes_owner import csv_response, invite_url
from terakoya.web.routes_pages import utc_offset
from terakoya.web.security import Principal, RowId, api_user, client_address, get_state


class ErrorDetail(BaseModel):
    code: str = Field(description="what kind of error: auth, forbidden, not-found, state, data, ...")
    message: str = Field(description="what was wrong and how to fix it")


class ErrorOut(BaseModel):
    """The one shape of every error the API returns."""

    error: ErrorDetail


#: the errors any operation may answer with, documented in /openapi.json in the one error shape
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (401, "not signed in: send a Bearer token (or the session cookie)"),
        (403, "signed in, but this needs another role, or the X-CSRF-Token header is missing"),
        (404, "no such thing in this project"),
        (409, "not possible in the state things are in (a lease ran out, nothing to undo)"),
        (413, "the request body is too large"),
        (422, "the request is not valid: the message names the field and what it takes"),
        (429, "too many attempts: wait and try again"),
    )
}

router = APIRouter(prefix="/api/v1", responses=ERRORS)

Trainer = Annotated[Principal, Depends(api_user("trainer"))]
Reviewer = Annotated[Principal, Depends(api_user("reviewer"))]
Owner = Annotated[Principal, Depends(api_user("owner"))]


def _source(who: Principal) -> str:
    return "api" if who.via == "token" else "web"


# ----------------------------------------------------------------------------- bodies and answers


class AnswerIn(BaseModel):
    label: str | None = Field(
        None, description="one of the project's labels (for verify tasks: the teacher's, or a correction)"
    )
    value: dict[str, Any] | None = Field(
        None,
        description="a written-answer task's answer (generate.v1): rate {ratings, text?}, compare {choice: a|b|tie|"
        "both_bad}, correct {text}",
    )
    rationale: str | None = Field(None, description="optional explanation of the answer")
    active_seconds: float | None = Field(
        None, description="seconds since your previous action, measured by the client; capped by the server"
    )
    idempotency_key: str | None = Field(
        None, max_length=100, description="a random key per answer; resending it returns the first answer"
    )

    @model_validator(mode="after")
    def _label_or_value(self) -> AnswerIn:
        if self.label is None and self.value is None:
            raise ValueError("give label (one of the project's labels) or, for a written-answer task, value")
        return self


class FlagIn(BaseModel):
    reason: str = Field(description="broken | ambiguous | guideline_unclear")
    comment: str = Field("", description="what is wrong")
    active_seconds: float | None = None
    idempotency_key: str | None = Field(None, max_length=100)


class TermIn(BaseModel):
    term: str
    definition: str
    example: str | None = None


class InviteIn(BaseModel):
    role: str = Field("trainer", description="trainer or reviewer")
    email: str | None = Field(None, description="only this address may use the invite (optional)")
    note: str = ""
    tags: list[str] = Field(default_factory=list, description="expertise the project asks for")
    languages: list[str] | None = Field(None, description="languages the project asks for (default: the project's)")
    days: float = Field(7.0, description="days until the link expires")


class PayIn(BaseModel):
    mode: str = Field(description="per_item or per_hour")
    per_item: float = Field(0.0, ge=0, le=MAX_PAY, allow_inf_nan=False)
    per_hour: float = Field(0.0, ge=0, le=MAX_PAY, allow_inf_nan=False)
    currency: str | None = Field(None, max_length=MAX_CURRENCY)


_PAY_FIELDS = {"mode": "mode", "per_item": "per item", "per_hour": "per hour", "currency": "currency"}


def pay_from_form(*, mode: str, per_item: str, per_hour: str, currency: str) -> PayIn:
    """The owner's pay form, checked by :class:`PayIn`, the rules ``PUT /api/v1/pay`` applies to its body; a
    DataError that names each wrong field and what it takes."""
    try:
        return PayIn.model_validate(
            {"mode": mode, "per_item": per_item.strip() or "0", "per_hour": per_hour.strip() or "0",
             "currency": currency.strip() or None}
        )  # fmt: skip
    except ValidationError as exc:
        problems = "; ".join(
            f"{_PAY_FIELDS.get(str(e['loc'][0]), str(e['loc'][0])) if e['loc'] else 'pay'}: {e['msg']}"
            for e in exc.errors()
        )
        raise DataError(
            f"pay is not valid — {problems}; amounts are numbers from 0 to 1,000,000, "
            "the currency at most 10 characters"
        ) from None


class JobIn(BaseModel):
    kind: str = Field(description="teach | route | train | evaluate")
    budget_items: int | None = Field(
        None, ge=1, le=10_000_000, description="for route: how many items to send to experts"
    )


class ProfileIn(BaseModel):
    tags: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)


class TokenIn(BaseModel):
    name: str = ""


class LoginIn(BaseModel):
    login: str = Field(description="email or name")
    password: str
    name: str = Field("script", description="a name for the new token")


class NextOut(BaseModel):
    task: workqueue.TaskView | None


class TokenOut(BaseModel):
    token: str = Field(description="shown once; store it safely")
    id: int
    name: str


class InviteOut(BaseModel):
    invite: accounts.InviteView
    token: str
    url: str


class Ok(BaseModel):
    ok: bool = True


class MeOut(BaseModel):
    id: int
    name: str
    email: str | None
    role: str | None
    tags: list[str]
    languages: list[str]


class GuidelinesOut(BaseModel):
    guidelines: str
    guidelines_html: str
    labels: list[workqueue.LabelOption]
    terms: list[glossary.TermView]
    version: str


class JobOut(BaseModel):
    id: int
    kind: str
    status: str
    done: int
    total: int
    message: str
    result: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None
    fraction: float | None


def _job_out(view: jobs.JobView) -> JobOut:
    return JobOut(**{k: getattr(view, k) for k in JobOut.model_fields})


# ----------------------------------------------------------------------------- sign-in for scripts


@router.post(
    "/auth/token", tags=["auth"], response_model=TokenOut, summary="Exchange email/name and password for a token"
)
async def login_token(request: Request, body: LoginIn) -> TokenOut:
    st = get_state(request)
    address = client_address(request)
    st.throttle.check(body.login, address)
    try:
        account = await run_in_threadpool(accounts.authenticate, st.db, st.project_id, body.login, body.password)
    except accounts.AuthError:
        st.throttle.failed(body.login, address)
        raise
    st.throttle.succeeded(body.login, address)
    view, token = await run_in_threadpool(accounts.create_api_token, st.db, account.id, body.name)
    return TokenOut(token=token, id=view.id, name=view.name)


# ----------------------------------------------------------------------------- the queue


@router.get("/tasks/next", tags=["queue"], response_model=NextOut, summary="Lease the next task")
def next_task(
    request: Request,
    who: Trainer,
    exclude: Annotated[list[int] | None, Query(description="task ids to pass over")] = None,
) -> NextOut:
    """The next task for you, leased to you for ``routing.lease_minutes``; ``task`` is null when none is left.

    A task you already hold comes back first unless excluded (pass the one you are showing to preload the next).
    """
    st = get_state(request)
    return NextOut(task=workqueue.lease_next(st.db, st.project_id, st.settings, who.person_id, exclude=exclude or ()))


@router.post("/tasks/{task_id}/answer", tags=["queue"], response_model=workqueue.SubmitResult, summary="Answer a task")
def answer_task(request: Request, task_id: RowId, body: AnswerIn, who: Trainer) -> workqueue.SubmitResult:
    st = get_state(request)
    return workqueue.submit_answer(
        st.db,
        st.project_id,
        st.settings,
        who.person_id,
        task_id,
        label=body.label,
        value=body.value,
        rationale=body.rationale,
        active_seconds=body.active_seconds,
        idempotency_key=body.idempotency_key,
        source=_source(who),
    )


@router.post("/tasks/{task_id}/flag", tags=["queue"], response_model=workqueue.SubmitResult, summary="Flag a task")
def flag_task(request: Request, task_id: RowId, body: FlagIn, who: Trainer) -> workqueue.SubmitResult:
    st = get_state(request)
    return workqueue.flag_task(
        st.db,
        st.project_id,
        st.settings,
        who.person_id,
        task_id,
        reason=body.reason,
        comment=body.comment,
        active_seconds=body.active_seconds,
        idempotency_key=body.idempotency_key,
        source=_source(who),
    )


@router.post("/tasks/{task_id}/skip", tags=["queue"], response_model=Ok, summary="Skip a task")
def skip_task(request: Request, task_id: RowId, who: Trainer) -> Ok:
    """Give the task back; you will not be shown this item again."""
    st = get_state(request)
    workqueue.skip_task(st.db, st.project_id, st.settings, who.person_id, task_id)
    return Ok()


class ReleaseIn(BaseModel):
    task_ids: list[RowId] = Field(max_length=100, description="tasks leased to you that you leave unanswered")


class ReleaseOut(BaseModel):
    released: int


@router.post("/tasks/release", tags=["queue"], response_model=ReleaseOut, summary="Give back tasks you leave")
def release_tasks(request: Request, body: ReleaseIn, who: Trainer) -> ReleaseOut:
    """Leaving the queue page: the tasks you held for later go back to the others at once."""
    st = get_state(request)
    return ReleaseOut(released=workqueue.release_tasks(st.db, st.project_id, who.person_id, body.task_ids))


@router.post("/answers/undo", tags=["queue"], response_model=workqueue.UndoResult, summary="Undo your last answer")
def undo(request: Request, who: Trainer) -> workqueue.UndoResult:
    """Your last answer is marked superseded and its task is leased back to you."""
    st = get_state(request)
    return workqueue.undo_last(st.db, st.project_id, st.settings, who.person_id)


# ----------------------------------------------------------------------------- guidelines and glossary


@router.get("/guidelines", tags=["glossary"], response_model=GuidelinesOut, summary="Guidelines, labels, glossary")
def guidelines(request: Request, who: Trainer) -> GuidelinesOut:
    st = get_state(request)
    settings = st.settings
    return GuidelinesOut(
        guidelines=settings.guidelines,
        guidelines_html=glossary.guidelines_html(settings),
        labels=workqueue.label_options(settings),
        terms=glossary.panel_terms(st.db, st.project_id, settings),
        version=glossary.guideline_version(st.db, st.project_id, settings),
    )


class GuidelinesIn(BaseModel):
    guidelines: str = Field(max_length=glossary.MAX_GUIDELINES)
    descriptions: dict[str, str] = Field(default_factory=dict, description="label name -> what it means")


@router.put("/guidelines", tags=["glossary"], response_model=GuidelinesOut, summary="Edit guidelines (owner)")
def edit_guidelines(request: Request, body: GuidelinesIn, who: Owner) -> GuidelinesOut:
    """A new version of the guidelines and label descriptions, from now on (earlier answers keep theirs)."""
    st = get_state(request)
    glossary.set_guidelines(
        st.db,
        st.project_id,
        st.settings,
        guidelines=body.guidelines,
        descriptions=body.descriptions,
        set_by=who.person_id,
    )
    st.project.reload_settings()
    return guidelines(request, who)


@router.get("/glossary", tags=["glossary"], response_model=list[glossary.TermView], summary="Glossary terms")
def list_terms(request: Request, who: Trainer, status: str | None = None) -> list[glossary.TermView]:
    """Reviewers and owners see every term; trainers see approved terms and their own proposals."""
    st = get_state(request)
    if who.may("reviewer"):
        return glossary.list_terms(st.db, st.project_id, status=status)
    mine = glossary.list_terms(st.db, st.project_id, proposed_by=who.person_id)
    approved = glossary.list_terms(st.db, st.project_id, status="approved")
    seen = {t.id for t in mine}
    rows = mine + [t for t in approved if t.id not in seen]
    return [t for t in rows if status is None or t.status == status]


@router.post("/glossary", tags=["glossary"], response_model=glossary.TermView, summary="Teach a term", status_code=201)
def propose(request: Request, body: TermIn, who: Trainer) -> glossary.TermView:
    """Propose a glossary entry; the owner approves it before the teacher and the guidelines use it."""
    st = get_state(request)
    return glossary.propose_term(
        st.db,
        st.project_id,
        who.person_id,
        term=body.term,
        definition=body.definition,
        example=body.example,
        settings=st.settings,
    )


@router.post("/glossary/{term_id}/approve", tags=["glossary"], response_model=glossary.TermView, summary="Approve")
def approve(request: Request, term_id: RowId, who: Reviewer) -> glossary.TermView:
    st = get_state(request)
    return glossary.decide_term(st.db, st.project_id, term_id, decided_by=who.person_id, approve=True)


@router.post("/glossary/{term_id}/reject", tags=["glossary"], response_model=glossary.TermView, summary="Reject")
def reject(request: Request, term_id: RowId, who: Reviewer) -> glossary.TermView:
    st = get_state(request)
    return glossary.decide_term(st.db, st.project_id, term_id, decided_by=who.person_id, approve=False)


# ----------------------------------------------------------------------------- me


@router.get("/me", tags=["me"], response_model=MeOut, summary="Who am I")
def me(request: Request, who: Trainer) -> MeOut:
    st = get_state(request)
    account = accounts.get_account(st.db, st.project_id, who.person_id)
    assert account is not None
    return MeOut(**{k: getattr(account, k) for k in MeOut.model_fields})


@router.get("/me/stats", tags=["me"], response_model=dashboard.TrainerStats, summary="My items, time, earnings")
def my_stats(
    request: Request, who: Trainer, utc_offset_minutes: int | None = Query(None, description="your time zone")
) -> dashboard.TrainerStats:
    """Items answered, active time and earnings today, this week and in total (days start at your midnight)."""
    st = get_state(request)
    offset = utc_offset(request) if utc_offset_minutes is None else utc_offset_minutes
    return dashboard.trainer_stats(st.db, st.project_id, st.settings, who.person_id, utc_offset_minutes=offset)


@router.put("/me/profile", tags=["me"], response_model=MeOut, summary="Set my languages and expertise tags")
def set_profile(request: Request, body: ProfileIn, who: Trainer) -> MeOut:
    st = get_state(request)
    accounts.update_profile(st.db, who.person_id, tags=body.tags, languages=body.languages)
    return me(request, who)


@router.get("/me/tokens", tags=["me"], response_model=list[accounts.TokenView], summary="My API tokens")
def my_tokens(request: Request, who: Trainer) -> list[accounts.TokenView]:
    return accounts.list_api_tokens(get_state(request).db, who.person_id)


@router.post("/me/tokens", tags=["me"], response_model=TokenOut, summary="Create an API token", status_code=201)
def new_token(request: Request, body: TokenIn, who: Trainer) -> TokenOut:
    view, token = accounts.create_api_token(get_state(request).db, who.person_id, body.name)
    return TokenOut(token=token, id=view.id, name=view.name)


@router.delete("/me/tokens/{token_id}", tags=["me"], response_model=Ok, summary="Revoke an API token")
def drop_token(request: Request, token_id: RowId, who: Trainer) -> Ok:
    accounts.revoke_api_token(get_state(request).db, who.person_id, token_id)
    return Ok()


# ----------------------------------------------------------------------------- owner and reviewer


@router.get("/dashboard", tags=["owner"], response_model=dashboard.Dashboard, summary="Dashboard data")
def dashboard_json(request: Request, who: Reviewer) -> dashboard.Dashboard:
    st = get_state(request)
    return dashboard.dashboard_data(st.db, st.project_id, st.settings)


@router.get("/quality", tags=["owner"], response_model=QualitySummary, summary="Agreement, reliability, pauses")
def quality_json(request: Request, who: Owner) -> QualitySummary:
    """Agreement among the people, each person's reliability (owner only), answers per item, who is paused."""
    st = get_state(request)
    return quality_summary(st.db, st.project_id, st.settings)


@router.post("/people/{person_id}/unpause", tags=["owner"], response_model=Ok, summary="Lift a trainer's pause")
def unpause_json(request: Request, person_id: RowId, who: Owner) -> Ok:
    st = get_state(request)
    if not lift_pause(st.db, st.project_id, person_id, by=who.person_id):
        raise StateError(f"person {person_id} is not paused on this project")
    return Ok()


@router.get(
    "/items/{external_id}/provenance",
    tags=["owner"],
    response_model=Provenance,
    summary="Where a training label came from",
)
def provenance_json(request: Request, external_id: str, who: Reviewer) -> Provenance:
    """Every student run that trained on the item: the answers, people, teacher suggestion, aggregation, guidelines."""
    st = get_state(request)
    return provenance(st.db, st.project_id, external_id)


class DecisionIn(BaseModel):
    label: str = Field(max_length=200)
    rationale: str | None = Field(None, max_length=5000)


class DecisionOut(BaseModel):
    answer_id: int


@router.get("/review", tags=["owner"], response_model=list[review.ReviewItem], summary="Items waiting for review")
def review_json(request: Request, who: Reviewer) -> list[review.ReviewItem]:
    """Flagged items and items answered differently, with every answer and the teacher's and student's labels."""
    st = get_state(request)
    return review.review_queue(st.db, st.project_id, settings=st.settings)


@router.post("/review/{item_id}", tags=["owner"], response_model=DecisionOut, summary="Decide an item's label")
def review_decide_json(request: Request, item_id: RowId, body: DecisionIn, who: Reviewer) -> DecisionOut:
    """The decision wins over the answers' aggregate in the next training run."""
    st = get_state(request)
    answer_id = review.decide(
        st.db, st.project_id, st.settings, item_id, who.person_id, body.label, rationale=body.rationale
    )
    return DecisionOut(answer_id=answer_id)


@router.post("/review/decisions/{answer_id}/undo", tags=["owner"], response_model=Ok, summary="Take a decision back")
def review_undo_json(request: Request, answer_id: RowId, who: Reviewer) -> Ok:
    st = get_state(request)
    review.undo_decision(st.db, st.project_id, answer_id)
    return Ok()


@router.get("/members", tags=["owner"], response_model=list[accounts.MemberView], summary="People in the project")
def members(request: Request, who: Owner) -> list[accounts.MemberView]:
    st = get_state(request)
    return accounts.list_members(st.db, st.project_id)


@router.get("/invites", tags=["owner"], response_model=list[accounts.InviteView], summary="Invites")
def invites(request: Request, who: Owner) -> list[accounts.InviteView]:
    st = get_state(request)
    return accounts.list_invites(st.db, st.project_id)


@router.post("/invites", tags=["owner"], response_model=InviteOut, summary="Invite a trainer", status_code=201)
def create_invite(request: Request, body: InviteIn, who: Owner) -> InviteOut:
    """A new invite link (shown once); the person sets their name and password on it."""
    st = get_state(request)
    view, token = accounts.create_invite(
        st.db,
        st.project_id,
        st.settings,
        created_by=who.person_id,
        role=body.role,
        email=body.email,
        note=body.note,
        tags=body.tags,
        languages=body.languages,
        days=body.days,
    )
    return InviteOut(invite=view, token=token, url=invite_url(request, token))


@router.delete("/invites/{invite_id}", tags=["owner"], response_model=Ok, summary="Revoke an invite")
def drop_invite(request: Request, invite_id: RowId, who: Owner) -> Ok:
    st = get_state(request)
    accounts.revoke_invite(st.db, st.project_id, invite_id)
    return Ok()


@router.get("/pay", tags=["owner"], response_model=PaySettings, summary="Pay in force")
def get_pay(request: Request, who: Owner) -> PaySettings:
    st = get_state(request)
    return accounts.current_pay(st.db, st.project_id, st.settings)


@router.put("/pay", tags=["owner"], response_model=PaySettings, summary="Set pay")
def put_pay(request: Request, body: PayIn, who: Owner) -> PaySettings:
    st = get_state(request)
    return accounts.set_pay(
        st.db,
        st.project_id,
        st.settings,
        mode=body.mode,
        per_item=body.per_item,
        per_hour=body.per_hour,
        currency=body.currency,
        set_by=who.person_id,
    )


@router.get("/payouts", tags=["owner"], response_model=payouts.PayoutStatement, summary="Payout statement")
def payout_statement(
    request: Request,
    who: Owner,
    start: Annotated[str | None, Query(description="first day, YYYY-MM-DD (default: the 1st of the month)")] = None,
    end: Annotated[str | None, Query(description="last day, included, YYYY-MM-DD (default: today, UTC)")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="json, or csv for a spreadsheet")] = "json",
) -> Any:
    """What each person earned in the period by the pay in force: answers, flags, active hours, gold accuracy,
    amount and the rule applied. Simulated experts are left out."""
    st = get_state(request)
    statement = payouts.payout_statement(
        st.db, st.project_id, st.settings, start=payouts.parse_day(start, "start"), end=payouts.parse_day(end, "end")
    )
    if format == "csv":
        return csv_response(statement)
    return statement


@router.get("/jobs", tags=["owner"], response_model=list[JobOut], summary="Recent jobs")
def list_jobs(request: Request, who: Reviewer) -> list[JobOut]:
    st = get_state(request)
    return [_job_out(j) for j in jobs.list_jobs(st.db, st.project_id)]


@router.post("/jobs", tags=["owner"], response_model=JobOut, summary="Start a job", status_code=202)
def start_job(request: Request, body: JobIn, who: Owner) -> JobOut:
    """Run teach, route, train or evaluate in the background; poll GET /api/v1/jobs/{id} for progress."""
    st = get_state(request)
    return _job_out(st.runner.start(body.kind, budget_items=body.budget_items))


@router.get("/jobs/{job_id}", tags=["owner"], response_model=JobOut, summary="One job's progress")
def get_job(request: Request, job_id: RowId, who: Reviewer) -> JobOut:
    st = get_state(request)
    return _job_out(jobs.get_job(st.db, st.project_id, job_id))
