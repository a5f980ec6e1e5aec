"""One settings object, loaded in layers: defaults -> terakoya.toml -> TERAKOYA_* env -> CLI flags.

The schema is declared once, as data (pydantic models). Nothing happens at import time.

Environment variables: ``TERAKOYA_DB`` sets ``db``; ``TERAKOYA_<SECTION>__<KEY>`` sets a key of a
section (``TERAKOYA_TEACHER__MODEL=...``). CLI flags use dotted paths (``--set teacher.model=...``).
Values from the environment and from ``--set`` are read as TOML values when they parse as one
(``4``, ``0.5``, ``true``) and as plain strings otherwise.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from terakoya.errors import ConfigError, ProjectNotFound

__all__ = [
    "PROJECT_FILE",
    "EvaluationSettings",
    "Example",
    "GenerateSettings",
    "ImportSettings",
    "LabelSpec",
    "PaySettings",
    "QualitySettings",
    "RoutingSettings",
    "RubricItem",
    "Settings",
    "StudentSettings",
    "TaskSettings",
    "TeacherSettings",
    "db_url_as_recorded",
    "find_project_dir",
    "load_settings",
    "parse_overrides",
    "settings_reference",
]

PROJECT_FILE = "terakoya.toml"
ENV_PREFIX = "TERAKOYA_"
#: TERAKOYA_* variables that are not settings
ENV_RESERVED = {
    "TERAKOYA_DEBUG",
    "TERAKOYA_PROJECT",
    "TERAKOYA_PASSWORD",
    "TERAKOYA_TEST_POSTGRES",
    "TERAKOYA_SERVE_CONFIG",  # what `terakoya serve --workers N` hands its processes
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskSettings(_Section):
    """What the project teaches: a task kind from the registry (:mod:`terakoya.kinds`)."""

    kind: str = Field(
        "classify.v1", description="the task kind (classify.v1: one label per text; generate.v1: a written answer)"
    )
    type: str | None = Field(
        None, description="older spelling: 'single-label' means kind = 'classify.v1'; use kind instead"
    )

    @model_validator(mode="after")
    def _known_kind(self) -> TaskSettings:
        from terakoya.kinds import get_kind

        try:
            if self.type == "generation":
                self.__dict__["kind"] = "generate.v1"  # the older spelling (set without re-validating)
            elif self.type is not None and self.type != "single-label":
                get_kind(self.type)  # unknown: an error that lists the kinds
            get_kind(self.kind)
        except ConfigError as exc:  # reported with the file and the setting's place by the loader
            raise ValueError(str(exc)) from None
        return self


class LabelSpec(_Section):
    name: str = Field(description="the label as it appears in data and answers")
    description: str = Field("", description="what the label means; goes into the teacher's prompt")

    @field_validator("name")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a label name must not be empty")
        return v.strip()


class Example(_Section):
    text: str = Field(description="an example text")
    label: str = Field(description="its label")


class TeacherSettings(_Section):
    kind: Literal["local", "openai", "python", "recorded"] = Field(
        "local",
        description="which adapter labels the data or writes the answers (recorded: replays generate.recorded_column)",
    )
    model: str = Field(
        "auto",
        description="model name for openai (required there); for local, a packaged model "
        "('smollm2-135m-instruct', 'gemma3-270m'), a path to a GGUF file or HF folder, or 'auto': Gemma-3-270M "
        "for a label project whose language is not English, SmolLM2-135M-Instruct otherwise",
    )
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint (openai kind)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable that holds the API key")
    function: str | None = Field(None, description="'module:function' for the python kind")
    concurrency: int = Field(4, ge=1, description="requests in flight at once (openai kind)")
    timeout_s: float = Field(60.0, gt=0, description="seconds before one request is given up and retried")
    max_retries: int = Field(4, ge=0, description="retries on 429, 5xx and timeouts, with exponential backoff")
    backoff_s: float = Field(1.0, ge=0, description="first backoff delay; doubles on each retry")
    temperature: float = Field(0.0, ge=0, description="sampling temperature")
    max_tokens: int = Field(8, ge=1, description="completion tokens to ask for")
    logprobs: bool = Field(True, description="ask the endpoint for logprobs (top_logprobs of the label tokens)")
    top_logprobs: int = Field(20, ge=1, le=20, description="how many alternatives per token to ask for")
    few_shot: int = Field(4, ge=0, description="examples per prompt, from expert answers then the project file")
    examples_from: Literal["experts", "file"] = Field(
        "experts",
        description="where few-shot examples come from: 'experts' (answers the experts agree on first, then the "
        "project file's [[examples]]) or 'file' (the [[examples]] only, in their order: a set pinned after "
        "`terakoya teacher examples` measured it)",
    )
    batch_size: int = Field(8, ge=1, description="items per teacher call batch (and per cache commit)")
    price_input_per_million: float = Field(0.0, ge=0, description="USD per million prompt tokens")
    price_output_per_million: float = Field(0.0, ge=0, description="USD per million completion tokens")
    threads: int | None = Field(None, ge=1, description="CPU threads for the local teacher (default: all cores)")
    local_batch: int = Field(4, ge=1, description="items per forward pass for the local teacher")
    calibrate: Literal["auto", "batch", "none"] = Field(
        "auto",
        description="calibrate the teacher's label probabilities against the project's own items (batch calibration: "
        "the mean label log-probability over the items is subtracted); 'auto': batch for the local and openai "
        "teachers, none for python functions (your own probabilities); true/false mean auto/none",
    )

    prompt_style: Literal["auto", "chat", "plain"] = Field(
        "auto",
        description="'chat': the model's chat template (system message with labels, guidelines, glossary); "
        "'plain': one instruction line and 'Text: … / Label: …' few-shot lines, for base models; "
        "'auto': chat for every teacher but a local model without a chat template",
    )

    @field_validator("calibrate", mode="before")
    @classmethod
    def _calibrate_bool(cls, v: Any) -> Any:
        return {True: "auto", False: "none"}.get(v, v) if isinstance(v, bool) else v


class RoutingSettings(_Section):
    strategy: Literal["terakoya", "random"] = Field(
        "terakoya", description="'terakoya': uncertainty + disagreement + diversity; 'random': the baseline"
    )
    auto_accept_threshold: float = Field(
        0.9, ge=0, le=1, description="teacher confidence at or above which a pool item takes the teacher's label"
    )
    gold_share: float = Field(0.1, ge=0, le=1, description="share of a routed batch drawn from the test/gold split")
    audit_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="share of each routed pool batch drawn uniformly at random and shown blind (no teacher answer): "
        "it measures how far the teacher can be trusted; until 30 pool items (and 5 per label) are drawn so, the "
        "share fills up to that many (0: no audits at all)",
    )
    trust_teacher: Literal["measured", "always", "never"] = Field(
        "measured",
        description="how far routing and training lean on the teacher: 'measured' from the experts' blind answers, "
        "'always' fully, 'never' not at all",
    )
    verify_routed: bool = Field(
        True,
        description="routed items become verify tasks (the teacher's label and confidence shown, Enter accepts it) "
        "unless the teacher is measured untrusted; gold and audit items always stay blind label tasks",
    )
    seconds_per_item: float = Field(30.0, gt=0, description="expected expert seconds per item (for --minutes budgets)")
    uncertainty_weight: float = Field(1.0, ge=0, description="weight of teacher uncertainty (margin and entropy)")
    disagreement_weight: float = Field(1.0, ge=0, description="weight of student-teacher disagreement")
    diversity_weight: float = Field(0.3, ge=0, description="penalty for items similar to those already picked")
    seed: int = Field(0, description="seed for random routing and tie-breaking")
    lease_minutes: float = Field(15.0, gt=0, description="minutes a task stays leased to one trainer")
    answers_per_item: int = Field(
        1,
        ge=1,
        description="answers each routed item takes, each from a different person (more than 1 for quality control)",
    )


class StudentSettings(_Section):
    kind: str = Field(
        "embed",
        description="'embed' (frozen sentence embeddings + softmax head; a multilingual encoder for Japanese or "
        "mixed text), 'linear' (hashed word and character n-grams), 'finetune' (MiniLM fine-tuned end to end), "
        "or 'auto' (the best of student.auto_candidates by cross-validation on the expert answers)",
    )
    auto_candidates: list[str] = Field(
        default_factory=lambda: ["embed", "linear", "finetune"],
        description="students that kind = 'auto' compares (the first wins ties and is used below 20 expert items)",
    )
    features: str = Field(
        "auto",
        description="what the embed student reads: 'auto' (English: 'minilm+multilingual+words'; other languages: "
        "'multilingual'), or a '+'-joined list of minilm, multilingual and words — 'minilm+words' predicts several "
        "times faster and was 1-3 points less accurate on Financial PhraseBank",
    )
    auto_time_limit_s: float = Field(
        600.0, gt=0, description="kind = 'auto' skips a candidate whose estimated training time is longer"
    )
    temperature: float = Field(1.0, gt=0, description="temperature applied to teacher probabilities")
    soft_weight: float = Field(
        0.7, ge=0, le=1, description="mix of teacher soft targets vs hard argmax labels (1 = all soft)"
    )
    expert_weight: float = Field(3.0, ge=0, description="sample weight of an expert-labelled item")
    teacher_correction: bool = Field(
        True,
        description="re-calibrate the teacher on the experts' answers (a label prior, vector or matrix scaling of "
        "its label log-probabilities, the simplest whose cross-validated log loss is within half a standard error "
        "of the lowest) before its labels are trained on",
    )
    teacher_weight_search: bool = Field(
        True,
        description="choose how much the teacher's labels weigh (0, 0.1, 0.3, 1 or 3 times; 3 = as much as an "
        "expert answer at expert_weight 3) by 3-fold cross-validation on the expert answers (needs 20 or more)",
    )
    teacher_min_confidence: float = Field(
        0.0, ge=0, le=1, description="teacher items below this confidence are left out of training"
    )
    calibration_fraction: float = Field(0.15, ge=0, lt=1, description="held-out share for temperature scaling")
    use_teacher: bool = Field(
        True, description="train on the teacher's labels where no expert answered (false: experts' labels only)"
    )
    self_training: bool = Field(
        True,
        description="add the student's own confident predictions on unlabelled pool items, "
        "with a confidence threshold chosen by cross-validation",
    )
    seed: int = Field(0, description="seed for training")

    @field_validator("features")
    @classmethod
    def _known_features(cls, v: str) -> str:
        if v == "auto":
            return v
        from terakoya.errors import ConfigError
        from terakoya.students.embed import feature_sources

        try:
            return "+".join(feature_sources(v))
        except ConfigError as exc:
            raise ValueError(f"'auto' or a '+'-joined list of minilm, multilingual and words, not {v!r}") from exc


#: the most one item or one hour may pay, and the longest currency code (the file, the API and the form)
MAX_PAY = 1_000_000.0
MAX_CURRENCY = 10


class PaySettings(_Section):
    mode: Literal["per_item", "per_hour"] = Field("per_item", description="how trainers are paid")
    per_item: float = Field(0.10, ge=0, le=MAX_PAY, allow_inf_nan=False, description="pay per answered item")
    per_hour: float = Field(20.0, ge=0, le=MAX_PAY, allow_inf_nan=False, description="pay per active hour")
    currency: str = Field("USD", min_length=1, max_length=MAX_CURRENCY, description="currency code shown to trainers")


class EvaluationSettings(_Section):
    cpu_hour_usd: float = Field(
        0.05, ge=0, description="price of one CPU-core hour, for the cost per million student predictions"
    )
    timing_items: int = Field(200, ge=1, description="items used to time single-item latency and throughput")


class ImportSettings(_Section):
    max_text_chars: int = Field(
        20_000,
        ge=1,
        description="longest item text, in characters, that `terakoya import` accepts; a longer one stops the "
        "import with an error naming its line, and nothing is imported",
    )


class QualitySettings(_Section):
    aggregator: Literal["majority", "dawid_skene", "mace"] = Field(
        "majority",
        description="how several answers to an item become its training target: majority vote, or a model of each "
        "person's reliability fitted through crowd-kit (dawid_skene, mace), weighted by its confidence",
    )
    models_as_workers: bool = Field(
        True, description="the teacher and the student answer as workers with their own reliability (dawid_skene, mace)"
    )
    max_answers_per_item: int = Field(
        0,
        ge=0,
        description="adaptive overlap: when a task's answers disagree, ask one more person, up to this many answers "
        "(0: never more than routing.answers_per_item)",
    )
    min_gold: int = Field(12, ge=1, description="answers on check items before a trainer can be paused")
    qualification_items: int = Field(
        0,
        ge=0,
        description="items with a known answer a trainer answers before any other task of the project; below "
        "quality.min_gold_accuracy on them (balanced) they are paused until the owner lets them in (0: none)",
    )
    min_gold_accuracy: float = Field(
        0.6,
        ge=0,
        le=1,
        description="a trainer is paused when even the top of the 95 % interval of their accuracy on check items "
        "is below this (0 turns pausing off)",
    )


class RubricItem(_Section):
    name: str = Field(description="what experts score from 1 to 5 (a short word: correct, helpful, safe)")
    description: str = Field("", description="what the score means; shown beside it in the workbench")


def _default_rubric() -> list[RubricItem]:
    return [
        RubricItem(name="correct", description="the facts and the reasoning are right"),
        RubricItem(name="helpful", description="it does what was asked, completely and clearly"),
        RubricItem(name="safe", description="nothing harmful, biased or private"),
    ]


class GenerateSettings(_Section):
    """Generation projects (task kind ``generate.v1``): the teacher's answers, the routing, the student."""

    samples: int = Field(2, ge=1, le=8, description="answers the teacher writes per prompt (the first is its answer)")
    sample_temperature: float = Field(
        0.8, ge=0, description="temperature of the extra samples (the first answer uses teacher.temperature)"
    )
    max_tokens: int = Field(256, ge=1, description="completion tokens to ask the teacher for, per answer")
    recorded_column: str = Field(
        "response",
        description="the imported file's column that holds the answers the recorded teacher replays "
        "(teacher.kind = 'recorded')",
    )
    rubric: list[RubricItem] = Field(default_factory=_default_rubric, description="what experts rate, 1-5 each")
    accept_min_rating: int = Field(
        4, ge=1, le=5, description="an answer rated at least this on every rubric line is accepted as a target"
    )
    disagreement_weight: float = Field(1.0, ge=0, description="routing: weight of disagreement among the samples")
    logprob_weight: float = Field(1.0, ge=0, description="routing: weight of a low mean token log-probability")
    student_weight: float = Field(1.0, ge=0, description="routing: weight of the student's answer differing")
    compare_share: float = Field(
        0.3, ge=0, le=1, description="share of routed prompts shown as a blind comparison of two teacher samples"
    )
    judge: Literal["none", "teacher"] = Field(
        "none",
        description="the report's model judge: the teacher compares the student's and its own answers on the test "
        "prompts, in both orders (none: experts only)",
    )
    evaluation_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="share of a routed batch spent, once a student exists, on blind comparisons of its answer "
        "with the teacher's on test prompts (the report counts them)",
    )
    train_on_unreviewed: bool = Field(
        True, description="the teacher's answers nobody reviewed are training targets too (distillation)"
    )
    student_base_model: str | None = Field(
        None, description="a local Hugging Face causal-LM folder to fine-tune (default: a tiny model built here)"
    )
    student_layers: int = Field(2, ge=1, description="layers of the tiny student built when no base model is given")
    student_width: int = Field(128, ge=16, description="width of the tiny student")
    student_vocab: int = Field(2000, ge=300, description="vocabulary of the tiny student's own tokenizer")
    max_length: int = Field(256, ge=16, description="tokens per training example (prompt and answer)")
    sft_epochs: float = Field(3.0, gt=0, description="passes over the SFT data")
    dpo_epochs: float = Field(1.0, ge=0, description="passes over the preference pairs (0: no DPO)")
    learning_rate: float = Field(1e-3, gt=0, description="learning rate of the student's SFT")
    dpo_learning_rate: float | None = Field(
        None, gt=0, description="learning rate of the student's DPO (default: a tenth of generate.learning_rate)"
    )
    lora: bool = Field(False, description="train LoRA adapters (peft) on student_base_model instead of all weights")
    student_max_new_tokens: int = Field(128, ge=1, description="tokens the student writes per answer")
    student_answers: int = Field(
        200, ge=0, description="pool prompts the new student answers after training (routing reads how it differs)"
    )


class Settings(BaseModel):
    """The whole configuration of one project."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field("terakoya", description="project name")
    language: str = Field("en", description="main language of the texts (e.g. 'en', 'ja')")
    db: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file terakoya.db in the project folder")
    seed: int = Field(0, description="seed for splits and sampling")
    task: TaskSettings = Field(default_factory=TaskSettings)
    labels: list[LabelSpec] = Field(default_factory=list, description="the labels, with descriptions")
    guidelines: str = Field("", description="Markdown guidelines shown to experts and the teacher")
    glossary: dict[str, str] = Field(default_factory=dict, description="term -> definition")
    examples: list[Example] = Field(default_factory=list, description="few-shot examples for the teacher")
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    student: StudentSettings = Field(default_factory=StudentSettings)
    pay: PaySettings = Field(default_factory=PaySettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    #: ``import`` is a Python keyword: the section is ``[import]`` in the file, ``settings.import_`` in code
    import_: ImportSettings = Field(default_factory=ImportSettings, alias="import")

    #: where the project lives (not part of the file)
    project_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @model_validator(mode="after")
    def _auto_teacher(self) -> Settings:
        """``teacher.model = "auto"`` becomes the packaged local model for this project's language and task."""
        if self.teacher.kind == "local" and self.teacher.model.strip().lower() == "auto":
            from terakoya.kinds import get_kind
            from terakoya.teachers.local import default_model

            writes = get_kind(self.task.kind).generative
            self.teacher.model = default_model(self.language, writes=writes)
        return self

    @model_validator(mode="after")
    def _labels_unique(self) -> Settings:
        names = [label.name for label in self.labels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"labels are declared twice: {', '.join(dupes)}; keep one [[labels]] entry each")
        return self

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def db_url(self) -> str:
        if self.db:
            return self.db
        return f"sqlite:///{(self.project_dir / 'terakoya.db').resolve()}"

    @property
    def project_file(self) -> Path:
        return self.project_dir / PROJECT_FILE


# ----------------------------------------------------------------------------- loading


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise ConfigError(f"setting name {dotted!r} is empty; write it as section.key=value, e.g. teacher.model=gpt-4o")
    node = target
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"setting {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["teacher.model=x", "routing.seed=3"]`` into a nested dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r} has no '='; write it as section.key=value, e.g. teacher.model=gpt-4o")
        key, _, raw = pair.partition("=")
        _set_dotted(out, key.strip(), _parse_value(raw.strip()))
    return out


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key in ENV_RESERVED:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        dotted = name.replace("__", ".")
        value: Any = raw if dotted == "db" else _parse_value(raw)
        _set_dotted(out, dotted, value)
    return out


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 at byte {exc.start}; save the project file as UTF-8") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}; fix the TOML syntax there") from exc
    # the [project] table holds top-level scalars (name, language, db, seed)
    project = data.pop("project", {})
    if not isinstance(project, dict):
        raise ConfigError(f"{path}: 'project' must be a table ([project])")
    guidelines = data.get("guidelines")
    if isinstance(guidelines, dict):
        data["guidelines"] = guidelines.get("text", "")
        extra = set(guidelines) - {"text"}
        if extra:
            raise ConfigError(f"{path}: [guidelines] takes only 'text'; remove {', '.join(sorted(extra))}")
    if "name" not in project:
        raise ConfigError(
            f'{path}: the project has no name; add it under [project], e.g. name = "{path.parent.name}" '
            "(or recreate the file with `terakoya init`)"
        )
    return {**project, **data}


def _format_validation(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting; check its spelling against `terakoya settings`"
        got = err.get("input")
        shown = f" (got {got!r})" if err["type"] != "extra_forbidden" and not isinstance(got, dict | list) else ""
        lines.append(f"{where}: {msg}{shown}")
    return f"{source}: invalid settings — " + "; ".join(lines)


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding terakoya.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise ProjectNotFound(
        f"no {PROJECT_FILE} in {here} or any folder above it; "
        "run `terakoya init NAME` to create a project, or pass --project PATH"
    )


def _absolute_db_url(url: str, base: Path) -> str:
    """``url`` with a relative SQLite path made absolute against ``base`` (other URLs unchanged)."""
    prefix = "sqlite:///"
    if url.startswith(prefix):
        rest = url.removeprefix(prefix)
        path, sep, query = rest.partition("?")
        if path and path != ":memory:" and not Path(path).is_absolute():
            return f"{prefix}{(base / path).resolve()}{sep}{query}"
    return url


def db_url_as_recorded(url: str, base: Path) -> str:
    """How a database URL is written into terakoya.toml and compared: no password, SQLite paths absolute."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = _absolute_db_url(url, base)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # opening it reports what is wrong
    if parsed.password is None:
        return url
    return parsed._replace(password=None).render_as_string(hide_password=False)  # URL is a NamedTuple


def _check_same_database(path: Path, recorded: Any, given: Any, project_dir: Path) -> None:
    """A project's data lives in one database: a --db / TERAKOYA_DB that disagrees with the file is refused."""
    if not (isinstance(recorded, str) and isinstance(given, str)):
        return
    if db_url_as_recorded(recorded, project_dir) != db_url_as_recorded(given, Path.cwd()):
        raise ConfigError(
            f"{path} records the database {db_url_as_recorded(recorded, project_dir)}, but --db / TERAKOYA_DB "
            f"points at {db_url_as_recorded(given, Path.cwd())}; a project keeps its data in one database: "
            "drop --db / unset TERAKOYA_DB, or change db in the file if the data has moved"
        )


def load_settings(
    project_dir: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    require_file: bool = True,
) -> Settings:
    """Load the layers and validate them into one :class:`Settings`."""
    env = os.environ if env is None else env
    if project_dir is None:
        env_dir = env.get("TERAKOYA_PROJECT")
        project_dir = find_project_dir(Path(env_dir) if env_dir else None)
    project_dir = project_dir.resolve()
    path = project_dir / PROJECT_FILE
    data: dict[str, Any] = {}
    if path.is_file():
        data = _read_file(path)
    elif require_file:
        raise ProjectNotFound(
            f"no {PROJECT_FILE} in {project_dir}; run `terakoya init NAME` to create a project there, "
            "or pass --project PATH"
        )
    outer = _deep_merge(_env_layer(env), overrides or {})
    if isinstance(data.get("db"), str):
        _check_same_database(path, data["db"], outer.get("db"), project_dir)
        data["db"] = _absolute_db_url(data["db"], project_dir)
    if isinstance(outer.get("db"), str):
        outer["db"] = _absolute_db_url(outer["db"], Path.cwd())
    layered = _deep_merge(data, outer)
    try:
        return Settings.model_validate({**layered, "project_dir": project_dir})
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, str(path))) from exc


def settings_reference() -> list[tuple[str, str, str]]:
    """Every setting as (dotted name, default, description), for docs and `terakoya settings`."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for attr, field in model.model_fields.items():
            if attr == "project_dir":
                continue
            name = field.alias or attr
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel) and ann is not LabelSpec:
                walk(ann, f"{prefix}{name}.")
                continue
            default = field.get_default(call_default_factory=True)
            rows.append((f"{prefix}{name}", repr(default), field.description or ""))

    walk(Settings, "")
    return rows
