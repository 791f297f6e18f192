"""Operator arguments checked at DAG-parse time: which values are literal, and the flag rule.

A constructor argument is checked when the DAG file is parsed if its value is *literal*: known now,
not produced later by Airflow. Jinja text (``{{``, ``{%``, ``{#``), a file name Airflow will read as a
template (ending in one of the operator's ``template_ext``), and anything that is not plain data (an
``XComArg``, a mapped argument, any object Airflow resolves at run time) is not literal: such a value
is checked by the same function once rendered, when the task runs. Either way the error is the same
:class:`InvalidJobInput`, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, Sequence

from airflow_bqjobs.core.errors import InvalidJobInput

TEMPLATE_MARKERS = ("{{", "{%", "{#")
_PLAIN = (bool, int, float, date, datetime, timedelta)


def is_literal(value: Any, template_ext: Sequence[str] = ()) -> bool:
    """Whether ``value`` is final as written: plain data holding no template (see the module docstring)."""
    if value is None or isinstance(value, _PLAIN):
        return True
    if isinstance(value, str):
        return not any(marker in value for marker in TEMPLATE_MARKERS) and not (
            template_ext and value.endswith(tuple(template_ext))
        )
    if isinstance(value, Mapping):
        return all(is_literal(k, template_ext) and is_literal(v, template_ext) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(is_literal(item, template_ext) for item in value)
    return False


def validate_flag(value: Any, field: str) -> bool:
    """``True`` or ``False`` only: ``"yes"``, ``1`` or ``"False"`` are mistakes, not truthy values."""
    if not isinstance(value, bool):
        raise InvalidJobInput(field, f"must be True or False, got {value!r}")
    return value


def validate_optional_flag(value: Any, field: str) -> bool | None:
    """As :func:`validate_flag`, ``None`` meaning "the configured default"."""
    return None if value is None else validate_flag(value, field)
