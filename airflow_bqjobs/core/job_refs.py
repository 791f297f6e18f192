"""One job or many: the ``job_id`` argument of the cancel and delete operators, parsed up front.

Accepts every form :func:`parse_job_ref` does, or a list of them: written in the DAG file, or what
templating renders from the submit operator's XCom (one reference dict, or the lazy sequence of a
mapped submit task), lists inside the list included (``[submit.output, mapped_submit.output]``).
A Jinja ``xcom_pull`` rendered as text (``"{'projectId': ...}"`` or a list of those) is read back
as the literal it prints. Everything is validated before any request is sent.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_ref import JobRef, parse_job_ref

_SINGLE = (str, Mapping, JobRef)


def parse_job_refs(
    value: Any, *, project_id: str | None = None, location: str | None = None, field: str = "job_id"
) -> list[JobRef]:
    """A non-empty, duplicate-free list of validated references, in the order given."""
    value = _literal(value, field)
    if isinstance(value, _SINGLE):
        return [parse_job_ref(value, project_id=project_id, location=location, field=field)]
    if not isinstance(value, Iterable):
        raise InvalidJobInput(field, f"expected a job reference or a list of them, got {type(value).__name__}")
    refs: list[JobRef] = []
    for item, item_field in _flatten(value, field):
        ref = parse_job_ref(item, project_id=project_id, location=location, field=item_field)
        if ref not in refs:
            refs.append(ref)
    if not refs:
        raise InvalidJobInput(field, "is an empty list: name at least one job")
    return refs


def _flatten(items: Iterable, field: str) -> Iterator[tuple[Any, str]]:
    for index, item in enumerate(items):
        item_field = f"{field}[{index}]"
        item = _literal(item, item_field)
        if not isinstance(item, _SINGLE) and isinstance(item, Iterable):
            yield from _flatten(item, item_field)
        else:
            yield item, item_field


def _literal(value: Any, field: str) -> Any:
    """Text that prints a dict or a list (a templated ``xcom_pull``) becomes that dict or list."""
    if not isinstance(value, str) or value.strip()[:1] not in ("{", "["):
        return value
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        raise InvalidJobInput(field, f"{value[:80]!r} looks like a dict or list but is not a valid literal") from None


def parse_one_job_ref(
    value: Any, *, project_id: str | None = None, location: str | None = None, field: str = "job_id", purpose: str
) -> JobRef:
    """Exactly one job, in any form :func:`parse_job_refs` accepts; ``purpose`` ends the error text."""
    refs = parse_job_refs(value, project_id=project_id, location=location, field=field)
    if len(refs) != 1:
        raise InvalidJobInput(field, f"names {len(refs)} jobs; {purpose}")
    return refs[0]
