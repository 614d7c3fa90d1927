"""The GPU catalogue, aliases and custom sizes."""

from __future__ import annotations

import pytest

from strata.compute.gpus import CATALOGUE, find_gpu
from strata.compute.units import GiB, MiB, parse_size
from strata.errors import ConfigError


def test_catalogue_covers_the_issue_list() -> None:
    assert set(CATALOGUE) == {"l4", "a10g", "a100-40gb", "a100-80gb", "h100-80gb", "h200"}
    assert find_gpu("A100-80GB").memory_bytes == 80 * GiB
    assert find_gpu("h100").name == "h100-80gb"
    assert find_gpu("h200").memory_bytes == 143_771 * MiB


def test_custom_gpu_from_a_size() -> None:
    gpu = find_gpu(None, parse_size("48GiB", "--gpu-memory"))
    assert (gpu.name, gpu.memory_bytes) == ("custom", 48 * GiB)


def test_errors_name_the_option() -> None:
    with pytest.raises(ConfigError, match=r"--gpu 'v100'.*--gpu-memory"):
        find_gpu("v100")
    with pytest.raises(ConfigError, match=r"--gpu custom needs --gpu-memory"):
        find_gpu("custom")
    with pytest.raises(ConfigError, match=r"drop --gpu l4 or --gpu-memory"):
        find_gpu("l4", GiB)
    with pytest.raises(ConfigError, match=r"--gpu-memory 'lots' is not a size"):
        parse_size("lots", "--gpu-memory")
