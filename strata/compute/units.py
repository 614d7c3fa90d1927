"""Byte sizes in and out: parsing '48GiB' the way the settings do, and printing bytes."""

from __future__ import annotations

from pydantic import ByteSize, TypeAdapter, ValidationError

from strata.errors import ConfigError

KiB = 1024
MiB = 1024**2
GiB = 1024**3
GB = 1000**3

_BYTE_SIZE = TypeAdapter(ByteSize)


def parse_size(text: str, option: str) -> int:
    """Bytes in `text` ('48GiB', '512MiB', '80GB', '1000000'); `option` names the flag."""
    try:
        size = int(_BYTE_SIZE.validate_python(text))
    except ValidationError:
        raise ConfigError(
            f"{option} {text!r} is not a size; write e.g. 48GiB, 512MiB or 80GB."
        ) from None
    if size <= 0:
        raise ConfigError(f"{option} must be more than 0 bytes (got {text!r}).")
    return size


def gb(n: float) -> str:
    """Decimal gigabytes with two decimals: '39.77 GB'."""
    return f"{n / GB:,.2f} GB"


def mib(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"


def human(n: float) -> str:
    """A size in the unit that reads best: KiB, MiB or decimal GB."""
    if abs(n) < MiB:
        return f"{n / KiB:,.1f} KiB"
    if abs(n) < GB:
        return mib(n)
    return gb(n)
