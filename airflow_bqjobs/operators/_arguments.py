"""Parse-time checks of constructor arguments: one mechanism for every operator and the sensor.

Each constructor passes its own arguments with the check the task runs on them later
(``check_arguments(self, job_id=validate_job_id, ...)``). A literal value is checked now, when the DAG
file is parsed, so a typo shows up as an import error of the DAG file instead of a failed task
hours later; a templated value (Jinja text, an ``XComArg``...) is left to the same check once
rendered (see :mod:`airflow_bqjobs.core.arguments`). Arguments that are not template fields are
always literal.
"""

from __future__ import annotations

from typing import Any, Callable

from airflow_bqjobs.core.arguments import is_literal
from airflow_bqjobs.core.labels import sanitize_label_value

LABEL_VALUE_FILTER = "label_value"


def literal(task: Any, name: str) -> bool:
    """Whether ``task``'s argument ``name`` is known now (not a template field, or a literal value)."""
    if name not in task.template_fields:
        return True
    return is_literal(getattr(task, name), getattr(task, "template_ext", ()))


def check_arguments(task: Any, **checks: Callable[[Any], Any]) -> None:
    """Run ``check(value)`` on every argument ``name=check`` whose value is literal; raises its error."""
    for name, check in checks.items():
        if literal(task, name):
            check(getattr(task, name))


def with_label_filter(env):
    """The Jinja environment with the ``label_value`` filter (a DAG's own filter of that name wins).

    ``{{ run_id | label_value }}`` sanitises any text as the provider's own ``airflow-*`` labels are.
    """
    env.filters.setdefault(LABEL_VALUE_FILTER, sanitize_label_value)
    return env


class LabelValueFilter:
    """Mixin: every template of the task (mapped or not) has the ``label_value`` filter.

    Rendering ends in ``_do_render_template_fields`` of the (unmapped) task on every Airflow version,
    whichever Jinja environment the caller built, so the filter is added there.
    """

    def _do_render_template_fields(self, parent, template_fields, context, jinja_env, seen_oids) -> None:
        super()._do_render_template_fields(parent, template_fields, context, with_label_filter(jinja_env), seen_oids)
