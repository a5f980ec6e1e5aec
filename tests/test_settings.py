"""Settings in layers: defaults -> terakoya.toml -> TERAKOYA_* env -> CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from terakoya.errors import ConfigError, ProjectNotFound
from terakoya.project_file import append_labels, write_new_project
from terakoya.settings import load_settings, parse_overrides, settings_reference


def _project(tmp_path: Path) -> Path:
    write_new_project(tmp_path, "fin")
    return tmp_path


def test_layers_in_order(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    text = (folder / "terakoya.toml").read_text().replace("few_shot = 4", "few_shot = 2")
    (folder / "terakoya.toml").write_text(text)
    assert load_settings(folder, env={}).teacher.few_shot == 2  # file beats default
    env = {"TERAKOYA_TEACHER__FEW_SHOT": "3", "TERAKOYA_DB": "sqlite:///x.db"}
    s = load_settings(folder, env=env)
    # env beats file; a relative SQLite path is where the command runs, made explicit
    assert (s.teacher.few_shot, s.db_url) == (3, f"sqlite:///{Path.cwd().resolve() / 'x.db'}")
    s = load_settings(folder, env=env, overrides=parse_overrides(["teacher.few_shot=1"]))
    assert s.teacher.few_shot == 1  # flags beat env
    assert load_settings(folder, env={}).teacher.concurrency == 4  # default


def test_default_db_is_sqlite_file_in_project(tmp_path: Path) -> None:
    s = load_settings(_project(tmp_path), env={})
    assert s.db_url == f"sqlite:///{(tmp_path / 'terakoya.db').resolve()}"
    assert s.name == "fin" and s.teacher.kind == "local" and s.labels == []


def test_unknown_setting_names_the_fix(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_settings(folder, env={}, overrides=parse_overrides(["teacher.modle=x"]))
    assert "teacher.modle: unknown setting; check its spelling against `terakoya settings`" in str(err.value)


def test_bad_value_says_where_and_what(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_settings(folder, env={"TERAKOYA_ROUTING__GOLD_SHARE": "2"})
    assert "routing.gold_share: Input should be less than or equal to 1 (got 2)" in str(err.value)


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    (tmp_path / "terakoya.toml").write_text('[project]\nname = "x\n')
    with pytest.raises(ConfigError, match=r"line 2.*fix the TOML syntax there"):
        load_settings(tmp_path, env={})


def test_no_project_file(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFound, match="run `terakoya init NAME`"):
        load_settings(tmp_path, env={})


def test_override_without_equals() -> None:
    with pytest.raises(ConfigError, match=r"has no '='; write it as section\.key=value"):
        parse_overrides(["teacher.model"])


def test_labels_appended_from_data_keep_comments(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    append_labels(folder, ["negative", "neutral", "positive"])
    s = load_settings(folder, env={})
    assert s.label_names == ["negative", "neutral", "positive"]
    assert "# Terakoya project file" in (folder / "terakoya.toml").read_text()


def test_duplicate_labels_rejected(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    append_labels(folder, ["a", "a"])
    with pytest.raises(ConfigError, match="labels are declared twice: a"):
        load_settings(folder, env={})


def test_bad_project_name() -> None:
    with pytest.raises(ConfigError, match="project name 'a b' is not usable"):
        write_new_project(Path("/nonexistent"), "a b")


def test_every_setting_has_a_description() -> None:
    for name, _default, description in settings_reference():
        assert description, f"setting {name} has no description"


def test_reserved_env_vars_are_not_settings(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    env = {"TERAKOYA_PASSWORD": "x", "TERAKOYA_DEBUG": "1", "TERAKOYA_PROJECT": str(folder)}
    assert load_settings(folder, env=env).name == "fin"
