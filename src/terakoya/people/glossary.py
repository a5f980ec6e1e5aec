"""What experts and the teacher read: guidelines, label descriptions and the glossary.

Glossary terms are proposed by a trainer, approved or rejected by the owner; approved terms join the
``[glossary]`` of terakoya.toml in the teacher's prompt (:func:`glossary_for_prompt`) and in the guidelines
panel trainers read while they work. The owner may edit the guidelines and label descriptions in the web app
(:func:`set_guidelines`): each edit is a kept revision, the newest wins over terakoya.toml
(:func:`edited_settings`, applied when a project opens), and answers carry the version they were given under.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from terakoya.errors import DataError, StateError
from terakoya.people.accounts import NotFound
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, GlossaryTerm, Item, Person
from terakoya.storage.web_models import GuidelineRevision

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_GUIDELINES",
    "GuidelineRevisionView",
    "TermView",
    "approved_terms",
    "decide_term",
    "edited_settings",
    "glossary_for_prompt",
    "guideline_history",
    "guideline_version",
    "guideline_version_in",
    "guidelines_html",
    "list_terms",
    "panel_terms",
    "propose_term",
    "set_guidelines",
]


@dataclass(frozen=True)
class TermView:
    id: int | None  # None for terms from terakoya.toml
    term: str
    definition: str
    example: str | None
    status: str  # proposed | approved | rejected
    source: str  # "project file" | "expert"
    proposed_by: int | None
    proposed_by_name: str | None
    created_at: datetime | None


def _view(row: GlossaryTerm, name: str | None) -> TermView:
    return TermView(
        row.id, row.term, row.definition, row.example, row.status, "expert", row.proposed_by, name, row.created_at
    )


def propose_term(
    db: Database,
    project_id: int,
    person_id: int,
    *,
    term: str,
    definition: str,
    example: str | None = None,
    settings: Settings | None = None,
) -> TermView:
    """A new glossary entry, waiting for the owner's approval."""
    term, definition = " ".join(term.split()), definition.strip()
    example = (example or "").strip() or None
    if not term:
        raise DataError("the term is empty; write the word or phrase you want to explain")
    if len(term) > 200:
        raise DataError(f"the term is {len(term)} characters long; keep it to 200")
    if not definition:
        raise DataError(f"the definition of {term!r} is empty; explain what it means in this project")
    if len(definition) > 2000 or (example and len(example) > 2000):
        raise DataError("the definition and the example must each stay under 2000 characters; shorten them")
    if settings is not None and term.lower() in {t.lower() for t in settings.glossary}:
        raise DataError(f"{term!r} is already in the project's glossary (terakoya.toml); propose another term")
    with db.session() as s:
        clash = s.scalar(
            select(GlossaryTerm.status).where(
                GlossaryTerm.project_id == project_id,
                func.lower(GlossaryTerm.term) == term.lower(),
                GlossaryTerm.status.in_(("proposed", "approved")),
            )
        )
        if clash is not None:
            raise DataError(f"{term!r} is already {clash} in the glossary; propose another term")
        row = GlossaryTerm(
            project_id=project_id,
            term=term,
            definition=definition,
            example=example,
            status="proposed",
            proposed_by=person_id,
        )
        s.add(row)
        s.flush()
        name = s.scalar(select(Person.name).where(Person.id == person_id))
        return _view(row, name)


def decide_term(db: Database, project_id: int, term_id: int, *, decided_by: int, approve: bool) -> TermView:
    """Approve or reject a proposed term (an approved term can be rejected later, and the other way round)."""
    with db.session() as s:
        row = s.get(GlossaryTerm, term_id)
        if row is None or row.project_id != project_id:
            raise NotFound(f"glossary term {term_id} does not exist in this project")
        if approve and row.status != "approved":
            clash = s.scalar(
                select(GlossaryTerm.id).where(
                    GlossaryTerm.project_id == project_id,
                    func.lower(GlossaryTerm.term) == row.term.lower(),
                    GlossaryTerm.status == "approved",
                    GlossaryTerm.id != row.id,
                )
            )
            if clash is not None:
                raise StateError(f"{row.term!r} is already approved (term {clash}); reject this duplicate instead")
        row.status = "approved" if approve else "rejected"
        row.decided_by = decided_by
        s.flush()
        name = s.scalar(select(Person.name).where(Person.id == row.proposed_by)) if row.proposed_by else None
        return _view(row, name)


def list_terms(
    db: Database, project_id: int, *, status: str | None = None, proposed_by: int | None = None
) -> list[TermView]:
    """Terms stored in the database, newest first; filter by status and by who proposed them."""
    query = (
        select(GlossaryTerm, Person.name)
        .outerjoin(Person, Person.id == GlossaryTerm.proposed_by)
        .where(GlossaryTerm.project_id == project_id)
        .order_by(GlossaryTerm.id.desc())
    )
    if status is not None:
        query = query.where(GlossaryTerm.status == status)
    if proposed_by is not None:
        query = query.where(GlossaryTerm.proposed_by == proposed_by)
    with db.session() as s:
        return [_view(row, name) for row, name in s.execute(query).all()]


def approved_terms(db: Database, project_id: int) -> list[TermView]:
    """Approved expert terms, oldest first (the order they were taught)."""
    return sorted(list_terms(db, project_id, status="approved"), key=lambda t: t.id or 0)


def panel_terms(db: Database, project_id: int, settings: Settings) -> list[TermView]:
    """The glossary trainers read: the project file's terms, then the approved expert terms, by term."""
    from_file = [
        TermView(None, term, definition, None, "approved", "project file", None, None, None)
        for term, definition in settings.glossary.items()
    ]
    return sorted([*from_file, *approved_terms(db, project_id)], key=lambda t: t.term.lower())


def glossary_for_prompt(db: Database, project_id: int, settings: Settings) -> dict[str, str]:
    """term -> definition for the teacher's prompt: terakoya.toml's glossary plus approved expert terms."""
    out = dict(settings.glossary)
    for t in approved_terms(db, project_id):
        out.setdefault(t.term, t.definition + (f" (e.g. {t.example})" if t.example else ""))
    return out


def guideline_version(db: Database, project_id: int, settings: Settings) -> str:
    """A short hash of the guidelines, labels and approved glossary an answer was given under."""
    with db.session() as s:
        return guideline_version_in(s, project_id, settings)


def guideline_version_in(s: Session, project_id: int, settings: Settings) -> str:
    """:func:`guideline_version` inside an open session."""
    rows = s.execute(
        select(GlossaryTerm.id, GlossaryTerm.term, GlossaryTerm.definition)
        .where(GlossaryTerm.project_id == project_id, GlossaryTerm.status == "approved")
        .order_by(GlossaryTerm.id)
    ).all()
    h = hashlib.sha256(settings.guidelines.encode())
    for spec in settings.labels:
        h.update(f"\0label\0{spec.name}\0{spec.description}".encode())
    for term, definition in sorted(settings.glossary.items()):
        h.update(f"\0file\0{term}\0{definition}".encode())
    for row in rows:
        h.update(f"\0term\0{row.id}\0{row.term}\0{row.definition}".encode())
    return h.hexdigest()[:16]


#: headings in the guidelines start at this level: the page around them has its own h1 and h2
GUIDELINE_TOP_HEADING = 3


def guidelines_html(settings: Settings) -> str:
    """The guidelines (Markdown) as HTML; raw HTML in them is shown as text, never run. Their headings are
    shifted down (``#`` becomes h3) so that they sit under the page's own headings."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False})
    tokens = md.parse(settings.guidelines or "")
    for token in tokens:
        if token.type in {"heading_open", "heading_close"}:
            level = min(6, int(token.tag[1:]) + GUIDELINE_TOP_HEADING - 1)
            token.tag = f"h{level}"
    return str(md.renderer.render(tokens, md.options, {}))


# ----------------------------------------------------------------------------- guidelines edited in the web app

#: longest guidelines and label description the web app takes, in characters
MAX_GUIDELINES = 100_000
MAX_DESCRIPTION = 2_000


@dataclass(frozen=True)
class GuidelineRevisionView:
    id: int
    guidelines: str
    label_descriptions: dict[str, str]
    version: str  # the version stamp of answers given under it (until a glossary term changes it)
    set_by: str | None
    created_at: datetime
    answers: int  # answers given under this version


def _apply(settings: Settings, guidelines: str, descriptions: dict[str, str]) -> Settings:
    labels = [
        spec.model_copy(update={"description": descriptions[spec.name]}) if spec.name in descriptions else spec
        for spec in settings.labels
    ]
    return settings.model_copy(update={"guidelines": guidelines, "labels": labels})


def edited_settings(db: Database, project_id: int, settings: Settings) -> Settings:
    """``settings`` with the owner's newest web edit of the guidelines and label descriptions, if any."""
    with db.session() as s:
        row = s.scalars(
            select(GuidelineRevision)
            .where(GuidelineRevision.project_id == project_id)
            .order_by(GuidelineRevision.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return settings
        return _apply(settings, row.guidelines, {str(k): str(v) for k, v in dict(row.label_descriptions).items()})


def set_guidelines(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    guidelines: str,
    descriptions: dict[str, str],
    set_by: int | None = None,
) -> GuidelineRevisionView:
    """Record a new revision of the guidelines and label descriptions (from now on; earlier answers keep the
    version they were given under). ``descriptions``: label name -> description, for declared labels only."""
    unknown = sorted(set(descriptions) - set(settings.label_names))
    if unknown:
        raise DataError(
            f"{', '.join(map(repr, unknown))} is not a label of this project; describe one of: "
            f"{', '.join(settings.label_names)}"
        )
    if len(guidelines) > MAX_GUIDELINES:
        raise DataError(f"the guidelines are {len(guidelines):,} characters long; keep them under {MAX_GUIDELINES:,}")
    too_long = sorted(name for name, text in descriptions.items() if len(text) > MAX_DESCRIPTION)
    if too_long:
        raise DataError(f"the description of {', '.join(too_long)} is too long; keep each under {MAX_DESCRIPTION:,}")
    clean = {name: text.strip() for name, text in descriptions.items()}
    new = _apply(settings, guidelines.strip(), clean)
    with db.session() as s:
        version = guideline_version_in(s, project_id, new)
        s.add(
            GuidelineRevision(
                project_id=project_id,
                guidelines=new.guidelines,
                label_descriptions={spec.name: spec.description for spec in new.labels},
                version=version,
                set_by=set_by,
            )
        )
    return guideline_history(db, project_id, limit=1)[0]


def guideline_history(db: Database, project_id: int, *, limit: int = 20) -> list[GuidelineRevisionView]:
    """The owner's edits, newest first, each with the answers given under its version."""
    with db.session() as s:
        rows = s.execute(
            select(GuidelineRevision, Person.name)
            .outerjoin(Person, Person.id == GuidelineRevision.set_by)
            .where(GuidelineRevision.project_id == project_id)
            .order_by(GuidelineRevision.id.desc())
            .limit(limit)
        ).all()
        versions = [r.version for r, _ in rows]
        counts = dict(
            s.execute(
                select(Answer.guideline_version, func.count())
                .join(Item, Item.id == Answer.item_id)
                .where(Item.project_id == project_id, Answer.guideline_version.in_(versions))
                .group_by(Answer.guideline_version)
            ).all()
        )
        return [
            GuidelineRevisionView(
                r.id,
                r.guidelines,
                {str(k): str(v) for k, v in dict(r.label_descriptions).items()},
                r.version,
                name,
                r.created_at,
                int(counts.get(r.version, 0)),
            )
            for r, name in rows
        ]
