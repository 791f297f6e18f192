"""Test-control operations on FakeState, shared by the Python handle and the
``/_fake/...`` HTTP API so both accept exactly the same specs.
"""

from __future__ import annotations

from .behaviour import normalise_fields
from .faults import Fault
from .rules import Rule
from .state import FakeState


def add_rule(state: FakeState, spec: dict) -> int:
    """spec: {job_id?, job_type?, labels?, query?, times?, behaviour: {...}}."""
    return state.rules.add(Rule.from_dict(dict(spec)))


def add_fault(state: FakeState, spec: dict) -> int:
    """spec: {kind, endpoint?, count?, rate?, delay_s?, job_id?}."""
    return state.injector.add(Fault.from_dict(dict(spec)))


def set_defaults(state: FakeState, fields: dict) -> dict:
    """Merge partial behaviour fields into the server defaults."""
    state.defaults = state.defaults.merged(normalise_fields(fields))
    return state.defaults.to_dict()


def set_clock(state: FakeState, spec: dict) -> dict:
    """Applied in this order: freeze (bool) / at, scale, advance (seconds)."""
    unknown = set(spec) - {"freeze", "at", "scale", "advance"}
    if unknown:
        raise ValueError(f"unknown clock field(s): {sorted(unknown)}")
    clock = state.clock
    if spec.get("freeze") is True or (spec.get("at") is not None and spec.get("freeze") is not False):
        clock.freeze(spec.get("at"))
    elif spec.get("freeze") is False:
        clock.unfreeze()
    if spec.get("scale") is not None:
        clock.set_scale(float(spec["scale"]))
    if spec.get("advance") is not None:
        clock.advance(float(spec["advance"]))
    return clock.state()


def set_config(state: FakeState, spec: dict) -> dict:
    """spec: {user_email?, seed?, location_rule?}."""
    unknown = set(spec) - {"user_email", "seed", "location_rule"}
    if unknown:
        raise ValueError(f"unknown config field(s): {sorted(unknown)}")
    if spec.get("user_email"):
        state.user_email = str(spec["user_email"])
    if spec.get("seed") is not None:
        state.injector.set_seed(int(spec["seed"]))
    if spec.get("location_rule") is not None:
        state.store.location_rule = bool(spec["location_rule"])
    return {"user_email": state.user_email, "location_rule": state.store.location_rule}


def calls_report(state: FakeState) -> dict:
    return {"calls": state.call_log.calls(), "counts": state.call_log.counts(),
            "faults": state.injector.counts()}


def uploaded_bytes(state: FakeState, job_id: str, project: str | None = None) -> bytes | None:
    job = state.store.find_any(job_id, project)
    return None if job is None else job.upload_bytes
