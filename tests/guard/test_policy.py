from __future__ import annotations

import pytest

from strata.errors import ConfigError
from strata.guard.policy import GuardPolicy
from strata.guard.sanitize import SizeLimits


def test_from_mapping_builds_a_policy() -> None:
    policy = GuardPolicy.from_mapping({"pii": "redact", "limits": {"max_field_chars": 10}})
    assert policy.pii == "redact" and policy.limits == SizeLimits(max_field_chars=10)
    assert policy.injection == "block"


@pytest.mark.parametrize(
    "values",
    [
        {"pii": "drop"},
        {"injection": "redact"},
        {"injection_threshold": 1.5},
        {"hidden_characters": "keep"},
        {"nope": 1},
    ],
)
def test_bad_values_raise_config_error_naming_the_key(values: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as caught:
        GuardPolicy.from_mapping(values)
    assert next(iter(values)) in caught.value.message
