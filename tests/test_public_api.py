"""The public API: a tested __all__, and nothing heavy imported with the package."""

from __future__ import annotations

import subprocess
import sys

import terakoya


def test_all_names_exist() -> None:
    for name in terakoya.__all__:
        assert hasattr(terakoya, name), name
    assert {"Project", "load", "TerakoyaError", "load_settings"} <= set(terakoya.__all__)


def test_errors_share_one_base() -> None:
    for name in terakoya.__all__:
        obj = getattr(terakoya, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, terakoya.TerakoyaError)


def test_import_is_light() -> None:
    heavy = "('torch', 'transformers', 'sklearn', 'matplotlib', 'fastapi')"
    code = f"import sys, terakoya, terakoya.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
