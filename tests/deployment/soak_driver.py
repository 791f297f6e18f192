"""The soak's seeded driver: triggers DAG runs and, at random intervals, does what breaks exactly-once.

Everything random comes from one ``random.Random(seed)``; the same seed gives the same plan (which
run, which task instance fails once, which action when), while what Airflow does in between depends on
timing. Actions, each recorded in :attr:`SoakDriver.events` and counted:

* ``kill_worker``: SIGKILL a Celery worker's whole process tree, start a new worker.
* ``stall_triggerer``: SIGSTOP a triggerer (main process and its trigger runner) for longer than
  ``[triggerer] triggerer_health_check_threshold``, so the other one takes its triggers over; then
  SIGCONT it or SIGKILL it and start a new one (a coin toss). A takeover is counted when triggers the
  stalled triggerer held belong to another triggerer at the end of the stall.
* ``clear``: clear (REST API) one finished task instance of a running DAG run while other task
  instances of that run are still running, deferred or waiting to retry.
* ``mark_failed``: mark (REST API) a deferred task instance failed while its job runs.
* ``fail once``: when a run is triggered, some of its task instances get a fake rule that makes their
  first job fail (``jobBackendError``), so the task retries into the next generation.

The audit (soak_audit.py) reads :attr:`record` to tell what a "user" asked for from what must not happen.
"""

from __future__ import annotations

import random
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

from airflow_bqjobs.core.labels import airflow_labels
from tests.deployment.celery_profile import TRIGGERER_HEALTH_CHECK_THRESHOLD_S, CeleryDeployment
from tests.deployment.soak_audit import DriverRecord, TiKey, split_job_id

ACTIVE_TI = ("running", "deferred", "up_for_retry", "queued", "scheduled", "restarting", "up_for_reschedule")
ACTIONS = {"kill_worker": 3, "stall_triggerer": 2, "clear": 3, "mark_failed": 3}
FAIL_ONCE_P = 0.06
MARK_MIN_WALL_LEFT_S = 4.0  # only mark a TI failed whose job has this long to run (no race with its end)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _log(msg: str) -> None:
    print(f"[soak] {msg}", flush=True)


@dataclass
class Stall:
    name: str
    job_id: int
    started: float
    until: float
    held: set[int]  # trigger ids it held when stopped


@dataclass
class SoakDriver:
    dep: CeleryDeployment
    dag_id: str
    tis_per_task: dict[str, int]  # task_id -> map length
    seed: int
    runs: int
    clock_scale: float
    trigger_every_s: float = 12.0
    gap_s: tuple[float, float] = (5.0, 12.0)
    rng: random.Random = field(init=False)
    record: DriverRecord = field(default_factory=DriverRecord)
    counts: Counter = field(default_factory=Counter)
    events: list[tuple[float, str]] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    fail_once: set[TiKey] = field(default_factory=set)
    stall: Stall | None = None
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    def event(self, kind: str, text: str) -> None:
        self.counts[kind] += 1
        self.events.append((round(time.monotonic() - self.started, 1), f"{kind}: {text}"))
        _log(f"{time.monotonic() - self.started:6.1f} s {kind}: {text}")

    # -- main loop ------------------------------------------------------------------------------

    def run(self, chaos_until: float) -> None:
        """Trigger the runs and act at random intervals until ``chaos_until`` (monotonic)."""
        next_trigger = time.monotonic()
        next_action = time.monotonic() + self.rng.uniform(*self.gap_s)
        while True:
            now = time.monotonic()
            if len(self.run_ids) < self.runs and now >= next_trigger:
                self.trigger_run()
                next_trigger = now + self.trigger_every_s
            if self.stall is not None and now >= self.stall.until:
                self.end_stall()
            if now >= chaos_until and len(self.run_ids) >= self.runs:
                break
            if now >= next_action and now < chaos_until:
                self.act()
                next_action = time.monotonic() + self.rng.uniform(*self.gap_s)
            time.sleep(0.5)
        if self.stall is not None:  # let the last stall run its full length (past the threshold)
            time.sleep(max(0.0, self.stall.until - time.monotonic()))
            self.end_stall()

    def act(self) -> None:
        kinds = list(ACTIONS)
        first = self.rng.choices(kinds, [ACTIONS[k] for k in kinds])[0]
        rest = [k for k in kinds if k not in (first, "kill_worker")]  # kills only when drawn: they always can
        self.rng.shuffle(rest)
        for kind in (first, *rest):  # an action whose precondition does not hold now gives way to another
            if getattr(self, kind)():
                return

    # -- runs -----------------------------------------------------------------------------------

    def trigger_run(self) -> None:
        run_id = f"soak_s{self.seed}_r{len(self.run_ids):03d}"
        for task_id, n in self.tis_per_task.items():
            for mi in range(n):
                if self.rng.random() < FAIL_ONCE_P:
                    self.dep.fake.add_rule(labels=airflow_labels(self.dag_id, task_id, run_id, mi), times=1,
                                           behaviour={"error": "jobBackendError", "running_s": 12})
                    self.fail_once.add((run_id, task_id, mi))
        self.dep.airflow.api("POST", f"/dags/{self.dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None})
        self.run_ids.append(run_id)
        self.event("trigger", run_id)

    # -- snapshots ------------------------------------------------------------------------------

    def tis(self, states: tuple[str, ...] | None = None) -> list[dict]:
        sql = ("SELECT ti.run_id, ti.task_id, ti.map_index, ti.state, ti.try_number, dr.state, ti.trigger_id "
               "FROM task_instance ti JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id "
               "WHERE ti.dag_id = %s")
        rows = self.dep.postgres.query(sql, (self.dag_id,))
        out = [{"run_id": r[0], "task_id": r[1], "map_index": r[2], "state": r[3], "try_number": r[4],
                "run_state": r[5], "trigger_id": r[6]} for r in rows]
        return [t for t in out if states is None or t["state"] in states]

    def jobs_of(self, key: TiKey) -> list[dict]:
        labels = airflow_labels(self.dag_id, key[1], key[0], key[2])
        return sorted((j for j in self.dep.fake.jobs if all((j["labels"] or {}).get(k) == v for k, v in labels.items())),
                      key=lambda j: j["created_at"])

    # -- actions --------------------------------------------------------------------------------

    def kill_worker(self) -> bool:
        ready = [w for w in sorted(self.dep.workers) if self.dep.worker_ready(w)]
        if not ready:
            return False  # the replacement of the last kill is still starting
        name = self.rng.choice(ready)
        pids = self.dep.kill_worker(name)
        new = self.dep.start_worker(wait=False)  # the driver goes on while it starts (30 s on a loaded machine)
        self.event("kill_worker", f"SIGKILL {name} ({len(pids)} processes), started {new}")
        return True

    def stall_triggerer(self) -> bool:
        if self.stall is not None or len(self.dep.triggerers) < 2:
            return False
        holding = {name: {r[0] for r in self.dep.postgres.query("SELECT id FROM trigger WHERE triggerer_id = %s",
                                                              (self.dep.triggerer_job_ids[name],))}
                   for name in sorted(self.dep.triggerers)}
        most = max(len(h) for h in holding.values())
        if not most:
            return False  # nothing to take over yet
        # the one holding more triggers (a coin toss on a tie), so that the stall forces a takeover
        name = self.rng.choice([n for n, h in holding.items() if len(h) == most])
        job_id, held = self.dep.triggerer_job_ids[name], holding[name]
        self.dep.airflow.components[name].pause()
        duration = TRIGGERER_HEALTH_CHECK_THRESHOLD_S + self.rng.uniform(8, 16)
        self.stall = Stall(name, job_id, time.monotonic(), time.monotonic() + duration, held)
        self.event("stall_triggerer", f"SIGSTOP {name} (TriggererJob {job_id}, {len(held)} triggers) for {duration:.0f} s")
        return True

    def end_stall(self) -> None:
        stall, self.stall = self.stall, None
        moved = 0
        if stall.held:
            rows = self.dep.postgres.query("SELECT id, triggerer_id FROM trigger WHERE id = ANY(%s)", (list(stall.held),))
            # Moved to another triggerer, or gone: a trigger row goes only once no task instance refers to
            # it, i.e. its event was submitted (the stopped owner cannot) or its task was changed (the
            # driver leaves a stalled triggerer's tasks alone), so gone means another triggerer ran it.
            moved = sum(1 for _, owner in rows if owner is not None and owner != stall.job_id)
            moved += len(stall.held) - len(rows)
        blocked = ""
        if moved:
            self.counts["takeover"] += 1
            self.counts["triggers_taken_over"] += moved
        elif stall.held:
            self.counts["stall_without_takeover"] += 1
            # Evidence for why: transactions left open (row locks the other triggerer's SKIP LOCKED skips)
            idle = self.dep.postgres.query(
                "SELECT pid, extract(epoch from now() - xact_start)::int, left(query, 100) FROM pg_stat_activity "
                "WHERE datname = current_database() AND state = 'idle in transaction' "
                "AND now() - xact_start > interval '10 seconds'")
            blocked = f"; transactions open > 10 s: {idle}"
        if self.rng.random() < 0.5:
            self.dep.airflow.components[stall.name].resume()
            how = "SIGCONT"
        else:
            self.dep.airflow.kill(stall.name)
            self.dep.triggerers.remove(stall.name)
            new_job = self.dep.start_triggerer(stall.name)
            how = f"SIGKILL, restarted (TriggererJob {new_job})"
        self.event("end_stall", f"{stall.name} after {time.monotonic() - stall.started:.0f} s: {moved} of "
                                f"{len(stall.held)} triggers taken over; {how}{blocked}")

    def clear(self) -> bool:
        tis = self.tis()
        by_run: dict[str, list[dict]] = {}
        for ti in tis:
            by_run.setdefault(ti["run_id"], []).append(ti)
        candidates = []
        for run_id, run_tis in sorted(by_run.items()):
            if run_tis[0]["run_state"] != "running" or not any(t["state"] in ACTIVE_TI for t in run_tis):
                continue
            candidates += [t for t in run_tis if t["state"] == "success"
                           and (t["run_id"], t["task_id"], t["map_index"]) not in self.record.marked_failed]
        if not candidates:
            return False
        ti = self.rng.choice(candidates)
        key = (ti["run_id"], ti["task_id"], ti["map_index"])
        body = {"dry_run": False, "dag_run_id": ti["run_id"], "task_ids": [[ti["task_id"], ti["map_index"]]],
                "only_failed": False, "reset_dag_runs": True}
        self.dep.airflow.api("POST", f"/dags/{self.dag_id}/clearTaskInstances", body)
        self.record.clears[key] += 1
        others = sum(1 for t in by_run[ti["run_id"]] if t["state"] in ACTIVE_TI)
        self.event("clear", f"{key} ({others} other task instances of the run active)")
        return True

    def mark_failed(self) -> bool:
        now = self.dep.fake.clock.now()
        stalled = self.stall.held if self.stall is not None else set()  # a stall's takeover count needs them
        deferred = [t for t in self.tis(("deferred",)) if (t["run_id"], t["task_id"], t["map_index"]) not in
                    self.record.marked_failed and t["trigger_id"] not in stalled]
        self.rng.shuffle(deferred)
        for ti in deferred[:6]:
            key = (ti["run_id"], ti["task_id"], ti["map_index"])
            running = [j for j in self.jobs_of(key) if j["state"] == "RUNNING"
                       and j["end_at"] is not None and (j["end_at"] - now) / self.clock_scale >= MARK_MIN_WALL_LEFT_S]
            if not running:
                continue
            path = f"/dags/{self.dag_id}/dagRuns/{_q(key[0])}/taskInstances/{key[1]}/{key[2]}"
            self.dep.airflow.api("PATCH", path, {"new_state": "failed"})
            self.record.marked_failed[key] = [j["job_id"] for j in running]
            self.record.marked_at[key] = (time.time(), ti["try_number"])
            self.event("mark_failed", f"{key} (job {split_job_id(running[-1]['job_id'])[0][-20:]}"
                                      f" running, {(running[-1]['end_at'] - now) / self.clock_scale:.0f} s left)")
            return True
        return False
