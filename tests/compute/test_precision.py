"""Weight precisions and KV dtypes: group overhead is counted and stated."""

from __future__ import annotations

import pytest

from strata.compute.precision import kv_dtype_bytes, weight_precision
from strata.errors import ConfigError


def test_int4_group_128_adds_a_scale_and_a_zero_point_per_group() -> None:
    int4 = weight_precision("int4")
    assert int4.bits_per_weight == 4 + (16 + 4) / 128  # 4.15625
    assert int4.matrix_bytes(128) == (128 * 4 + 16 + 4) // 8 + 1  # 532 bits -> 67 bytes
    assert "one 16-bit scale and one 4-bit zero point per 128 weights" in int4.describe()


def test_smaller_groups_cost_more() -> None:
    assert weight_precision("int4", 32).bits_per_weight == 4 + 20 / 32
    assert weight_precision("int8").bits_per_weight == 8 + 24 / 128


def test_float_formats_have_no_groups() -> None:
    assert weight_precision("bfloat16").matrix_bytes(1000) == 2000
    assert weight_precision("fp8").matrix_bytes(1000) == 1000
    assert weight_precision("fp32").unquantized_bytes == 4


def test_unknown_precision_names_the_option_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"--weights 'int3'.*int4"):
        weight_precision("int3")
    with pytest.raises(ConfigError, match=r"--group-size"):
        weight_precision("int4", 0)


def test_kv_dtypes() -> None:
    assert [kv_dtype_bytes(n) for n in ("fp32", "float16", "bf16", "fp8")] == [4, 2, 2, 1]
    with pytest.raises(ConfigError, match=r"--kv-dtype 'int2'"):
        kv_dtype_bytes("int2")
