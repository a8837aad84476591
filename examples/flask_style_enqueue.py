"""Submitting jobs from synchronous code: a Flask-style view, a script, a management command.

    REDIS_URL=redis://localhost:6379/0 python examples/flask_style_enqueue.py

`SyncJobClient` blocks instead of awaiting and is safe to share between threads, so one client
per process serves every request thread. Workers run elsewhere: an async app's `JobService`,
or `streamjobs worker` processes. The views below are plain functions taking and returning
dicts, so they run as they are; in Flask, decorate them with `@app.post(...)` and
`@app.get(...)` and read the body from `request.get_json()`.
"""

from __future__ import annotations

import os
from typing import Any

from streamjobs import InvalidJobError, JobPriority
from streamjobs.sync import SyncJobClient

jobs = SyncJobClient(os.environ.get("REDIS_URL"))  # one per process, shared by all threads


def enqueue_report(
    body: dict[str, Any], client: SyncJobClient = jobs
) -> tuple[dict[str, Any], int]:
    """POST /reports: validate, queue, answer 202 with the job id (or 400 naming the field)."""
    try:
        job_id = client.submit_job(
            "build_report",
            args=(body["account"],),
            kwargs={"month": body.get("month")},
            priority=body.get("priority", JobPriority.NORMAL),
            job_id=body.get("request_id"),  # a retried request enqueues nothing twice
        )
    except (InvalidJobError, KeyError) as exc:
        return {"error": str(exc)}, 400
    return {"job_id": job_id, "status_url": f"/reports/{job_id}"}, 202


def report_status(job_id: str, client: SyncJobClient = jobs) -> tuple[dict[str, Any], int]:
    """GET /reports/<job_id>: the status, and the result once the job is done."""
    status = client.get_job_status(job_id)
    if status is None:
        return {"error": "no such job"}, 404
    result = client.get_job_result(job_id)
    body: dict[str, Any] = {"job_id": job_id, "status": status.value}
    if result is not None:
        body.update(result=result.result, error=result.error, attempts=result.attempts)
    return body, 200


if __name__ == "__main__":
    answer, code = enqueue_report({"account": "acme", "month": "2026-05"})
    print(code, answer)
    print(*report_status(answer["job_id"]))
    print(jobs.get_metrics()["queue"])
