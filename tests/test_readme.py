"""The README's configuration reference names every setting the code accepts."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from strata.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys += _keys(sub, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [k for k in _keys(Settings) if f"`{k}`" not in text]
    assert not missing, f"README.md's configuration reference lacks {missing}"


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make serve" in text and "make test" in text
