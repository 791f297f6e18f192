"""What the deployment tests share with their fixture: the running deployment's handle and the
timings/notes printed at the end of the session (see conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.deployment.airflow_deployment import AirflowDeployment
from tests.deployment.postgres import PostgresServer

CONN_ID = "bqjobs_fake"  # as in dags/bqjobs_deployment_dags.py
PROJECT = "test-project"
DAG_IDS = ("bqjobs_deploy_complete", "bqjobs_deploy_triggerer_restart", "bqjobs_deploy_mark_failed",
           "bqjobs_deploy_takeover")

TIMINGS: dict[str, float] = {}  # label -> seconds, in the order recorded
NOTES: list[str] = []  # things worth knowing about a run that passed (SIGKILLs needed, retries)


def record_timing(label: str, seconds: float) -> None:
    TIMINGS[label] = round(seconds, 1)
    print(f"[deployment:timing] {label}: {seconds:.1f} s", flush=True)


def note(text: str) -> None:
    NOTES.append(text)
    print(f"[deployment:note] {text}", flush=True)


@dataclass
class Deployment:
    fake: object  # tests.fakebq.remote.FakeBigQueryProcess
    postgres: PostgresServer
    airflow: AirflowDeployment
    triggerer_job_ids: dict[int, int] = field(default_factory=dict)  # triggerer pid -> TriggererJob id

    def triggerer_jobs(self) -> list[dict]:
        return self.airflow.api("GET", "/jobs?job_type=TriggererJob&limit=100")["jobs"]

    def wait_new_triggerer_job(self, pid: int, timeout: float = 60) -> int:
        """The TriggererJob id of the triggerer process ``pid`` (the running one not seen before)."""
        known = set(self.triggerer_job_ids.values())

        def new_job():
            self.airflow.assert_running("triggerer")
            fresh = [j for j in self.triggerer_jobs() if j["id"] not in known and j["state"] == "running"]
            return fresh[0]["id"] if len(fresh) == 1 else None

        job_id = self.airflow.wait_for(new_job, timeout, f"a TriggererJob row for triggerer pid {pid}")
        self.triggerer_job_ids[pid] = job_id
        return job_id
