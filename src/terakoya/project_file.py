"""Writing terakoya.toml: the commented template of `terakoya init`, and appending labels.

Appending is textual so that a user's comments and layout survive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import tomli_w

from terakoya.errors import ConfigError
from terakoya.settings import PROJECT_FILE

__all__ = ["append_labels", "render_template", "write_new_project"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _toml_str(value: str) -> str:
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


_GENERATE_TASK = """kind = "generate.v1"     # a written answer per prompt; experts rate, compare and correct them

[generate]
samples = 2                 # answers the teacher writes per prompt (their disagreement routes prompts)
max_tokens = 256
accept_min_rating = 4       # every rubric line at least this: the teacher's answer is learned
# recorded_column = "response"   # with teacher.kind = "recorded": the imported column of answers to replay
# student_base_model = "/path/to/a/hugging-face-causal-lm"   # default: a tiny model built here

[[generate.rubric]]
name = "correct"
description = "the facts and the reasoning are right"

[[generate.rubric]]
name = "helpful"
description = "it does what was asked, completely and clearly"

[[generate.rubric]]
name = "safe"
description = "nothing harmful, biased or private"
"""


def render_template(
    name: str, labels: Iterable[tuple[str, str]] = (), *, db: str | None = None, kind: str = "classify.v1"
) -> str:
    """The commented terakoya.toml of a new project (``db``: a URL as :func:`db_url_as_recorded` gives it;
    ``kind``: the task kind, ``generate.v1`` writes its section instead of the labels)."""
    label_blocks = "".join(f"\n[[labels]]\nname = {_toml_str(n)}\ndescription = {_toml_str(d)}\n" for n, d in labels)
    if not label_blocks:
        label_blocks = (
            "\n# No labels yet: the first `terakoya import --label-column COL` takes them from the data.\n"
            "# Or declare them here, with a description the teacher and the experts will read:\n"
            '# [[labels]]\n# name = "positive"\n# description = "good news for the company or its investors"\n'
        )
    db_line = (
        f"db = {_toml_str(db)}   # where the data lives"
        + ("" if db.startswith("sqlite") else "; a password comes from TERAKOYA_DB, PGPASSWORD or ~/.pgpass")
        if db
        else '# db = "postgresql+psycopg://user@host/dbname"   # default: SQLite file terakoya.db in this folder'
    )
    task_block = (
        _GENERATE_TASK
        if kind == "generate.v1"
        else f'kind = "classify.v1"     # one label per text, from the labels below\n{label_blocks}'
    )
    guidelines = (
        "Answer what was asked, correctly and briefly. Say so when you do not know."
        if kind == "generate.v1"
        else "Read the whole sentence. Label what it says about the company, not what you think of it."
    )
    return f"""# Terakoya project file. Every setting is listed by `terakoya settings`.
# Layers: defaults -> this file -> TERAKOYA_* environment -> command-line flags (--set section.key=value).

[project]
name = {_toml_str(name)}
language = "en"          # main language of the texts ("en", "ja", ...)
seed = 0
{db_line}

[task]
{task_block}
[guidelines]
text = \"\"\"
{guidelines}
\"\"\"

# The domain's vocabulary: term = "definition". Goes into the teacher's prompt and the experts' panel.
[glossary]
# EBITDA = "earnings before interest, taxes, depreciation and amortisation"

# Few-shot examples for the teacher (expert answers are added automatically as experts teach):
# [[examples]]
# text = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn."
# label = "positive"

[teacher]
kind = "local"                      # local | openai | python
model = "auto"   # packaged: SmolLM2-135M-Instruct for English, Gemma-3-270M for other languages (labels);
                 # or "smollm2-135m-instruct", "gemma3-270m", a path to a .gguf file or a model folder
# kind = "openai"
# model = "gpt-4o-mini"
# base_url = "https://api.openai.com/v1"
# api_key_env = "OPENAI_API_KEY"
# price_input_per_million = 0.15
# price_output_per_million = 0.60
few_shot = 4

[routing]
strategy = "terakoya"               # terakoya | random
auto_accept_threshold = 0.9         # teacher confidence that takes the teacher's label without an expert
gold_share = 0.1                    # share of each routed batch drawn from the test split, for quality checks
seconds_per_item = 30               # expected expert seconds per item, for --minutes budgets
answers_per_item = 1                # answers each item takes, each from a different person

[student]
kind = "linear"                     # linear | embed

[pay]
mode = "per_item"                   # per_item | per_hour
per_item = 0.10
per_hour = 20.0
currency = "USD"
"""


def write_new_project(
    folder: Path, name: str, labels: Iterable[tuple[str, str]] = (), *, db: str | None = None, kind: str = "classify.v1"
) -> Path:
    if not _NAME.match(name):
        raise ConfigError(
            f"project name {name!r} is not usable; use letters, digits, '.', '_' or '-' (e.g. fin-sentiment)"
        )
    path = folder / PROJECT_FILE
    if path.exists():
        raise ConfigError(f"{path} already exists; open it with `terakoya status`, or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(render_template(name, labels, db=db, kind=kind), encoding="utf-8")
    return path


def append_labels(project_dir: Path, labels: Iterable[str]) -> None:
    """Declare labels found in the data at the end of terakoya.toml."""
    path = project_dir / PROJECT_FILE
    blocks = "".join(
        f'\n[[labels]]\nname = {_toml_str(n)}\ndescription = ""   # describe it: the teacher reads this\n'
        for n in labels
    )
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n# Labels taken from the data on the first import\n" + blocks)
