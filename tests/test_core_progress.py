"""Progress lines from job resources (core/progress.py): figures, rate limit, the final line."""

from airflow_bqjobs.core.progress import ProgressReporter, final_line, format_bytes, format_duration, progress_line

NAME = "p:US.j"
START_MS = 1_000_000_000_000


def running(**query):
    return {
        "status": {"state": "RUNNING"},
        "statistics": {"creationTime": str(START_MS - 2000), "startTime": str(START_MS), "query": query},
    }


def done(**query):
    job = {
        "status": {"state": "DONE"},
        "statistics": {"creationTime": str(START_MS - 2000), "startTime": str(START_MS),
                       "endTime": str(START_MS + 125_000), "query": query},
    }
    return job


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_running_query_line_has_elapsed_bytes_slot_ms_and_stages():
    job = running(totalBytesProcessed=str(3 * 1024**3 // 2), totalSlotMs="345678",
                  queryPlan=[{"status": "COMPLETE"}, {"status": "COMPLETE"}, {"status": "RUNNING"}])
    line = progress_line(NAME, job, START_MS / 1000 + 125)
    assert line == "Job p:US.j RUNNING for 2 min 5 s: 1.5 GiB processed, 345,678 slot-ms, 2/3 stages done"


def test_slot_ms_from_the_timeline_when_the_query_has_no_total_yet():
    job = running(timeline=[{"totalSlotMs": "10"}, {"totalSlotMs": "2500"}])
    assert progress_line(NAME, job, START_MS / 1000 + 3) == "Job p:US.j RUNNING for 3.0 s: 2,500 slot-ms"


def test_pending_job_counts_from_creation():
    job = {"status": {"state": "PENDING"}, "statistics": {"creationTime": str(START_MS)}}
    assert progress_line(NAME, job, START_MS / 1000 + 42) == "Job p:US.j PENDING for 42 s"


def test_load_job_reports_rows_loaded():
    job = {"status": {"state": "RUNNING"}, "statistics": {"startTime": str(START_MS), "load": {"outputRows": "12345"}}}
    assert progress_line(NAME, job, START_MS / 1000 + 1) == "Job p:US.j RUNNING for 1.0 s: 12,345 rows loaded"


def test_final_line_has_duration_bytes_billed_and_cache_hit():
    job = done(totalBytesBilled="10485760", totalBytesProcessed="10000000", cacheHit=False, totalSlotMs="900")
    assert final_line(NAME, job) == (
        "Job p:US.j DONE in 2 min 5 s: 10.0 MiB billed, 9.5 MiB processed, cache hit: no, 900 slot-ms"
    )


def test_final_line_of_a_cache_hit_and_of_a_failure():
    assert final_line(NAME, done(totalBytesBilled="0", cacheHit=True)).endswith("0 B billed, cache hit: yes")
    failed = {**done(), "status": {"state": "DONE", "errorResult": {"reason": "invalidQuery", "message": "x"}}}
    assert final_line(NAME, failed) == "Job p:US.j failed [invalidQuery] in 2 min 5 s"


def test_reporter_gives_the_first_line_at_once_then_at_most_one_per_interval():
    clock = Clock(START_MS / 1000)
    reporter = ProgressReporter(NAME, interval=30, clock=clock)
    lines = []
    for _ in range(10):  # one read every 10 s for 100 s
        lines.append(reporter.update(running()))
        clock.now += 10
    assert [i for i, line in enumerate(lines) if line] == [0, 3, 6, 9]


def test_reporter_gives_the_final_line_once():
    reporter = ProgressReporter(NAME, clock=Clock(START_MS / 1000))
    assert reporter.update(done(totalBytesBilled="1")).startswith("Job p:US.j DONE in")
    assert reporter.update(done(totalBytesBilled="1")) is None


def test_formats():
    assert [format_duration(s) for s in (0.44, 12.4, 125, 3780)] == ["0.4 s", "12 s", "2 min 5 s", "1 h 3 min"]
    assert [format_bytes(b) for b in (0, 1023, 1536, 5 * 1024**4)] == ["0 B", "1023 B", "1.5 KiB", "5.0 TiB"]
