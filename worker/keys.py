"""The Redis keys and channels of job state (every key expires).

- ``sourcecheck:job:<id>``: the job record (no secrets)
- ``sourcecheck:started:<id>``: when and where a worker started the job
- ``sourcecheck:result:<id>``: the job's final result, written once
- ``sourcecheck:inflight:<org>``: sorted set of the organization's unfinished jobs,
  scored by their final deadline (the per-organization cap)
- ``sourcecheck:coalesce:<fingerprint>``: the unfinished job that identical tests join
- ``sourcecheck:recent:<fingerprint>``: the last finished job of that test (``max_age``)
- ``sourcecheck:rate:<org>``: sorted set of the jobs the organization started in the
  last minute, scored by when (the per-organization rate limit)
- channel ``sourcecheck:updates:<id>``: each started and final record of the job, as written
- stream ``sourcecheck:history``: the final record of each job of a stored source (its job
  record says ``recorded``), appended by ``finish.lua`` and consumed by the API's recorder
  (``api/history.py``, consumer group ``recorders``) into the metadata database; capped at
  about 100,000 entries not yet recorded
"""

from __future__ import annotations

JOB_KEY = "sourcecheck:job:{}"
STARTED_KEY = "sourcecheck:started:{}"
RESULT_KEY = "sourcecheck:result:{}"
UPDATES_CHANNEL = "sourcecheck:updates:{}"
INFLIGHT_KEY = "sourcecheck:inflight:{}"
COALESCE_KEY = "sourcecheck:coalesce:{}"
RECENT_KEY = "sourcecheck:recent:{}"
RATE_KEY = "sourcecheck:rate:{}"
RATE_WINDOW_SECONDS = 60
HISTORY_STREAM = "sourcecheck:history"
HISTORY_GROUP = "recorders"


def finish_keys(job_id: str, organization_id: str, fingerprint: str | None, *, remember: bool) -> list[str]:
    """The KEYS of ``worker/lua/finish.lua``; ``remember``: as the latest result of its test."""
    return [
        RESULT_KEY.format(job_id),
        INFLIGHT_KEY.format(organization_id),
        COALESCE_KEY.format(fingerprint) if fingerprint else "",
        RECENT_KEY.format(fingerprint) if fingerprint and remember else "",
        JOB_KEY.format(job_id),  # says whether the result goes into the source's history
        HISTORY_STREAM,
    ]
