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
- ``sourcecheck:events:<id>``: the job's live events (a Redis Stream, capped; its last entry
  ``end`` is added with the final result: worker.events)
- ``sourcecheck:cancel:<id>``: the job was asked to stop (DELETE of the test)
- ``sourcecheck:watch:<id>``: somebody watches the job's events (its worker writes them)
- ``sourcecheck:joined:<id>``: how many identical requests joined the job (coalesced)
- channel ``sourcecheck:cancel``: the id of each job asked to stop, for the workers
- channel ``sourcecheck:watch``: the id of each job somebody began to watch, for the workers
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
EVENTS_KEY = "sourcecheck:events:{}"
CANCEL_KEY = "sourcecheck:cancel:{}"
JOINED_KEY = "sourcecheck:joined:{}"
CANCEL_CHANNEL = "sourcecheck:cancel"
WATCH_KEY = "sourcecheck:watch:{}"
WATCH_CHANNEL = "sourcecheck:watch"
RATE_WINDOW_SECONDS = 60
HISTORY_STREAM = "sourcecheck:history"
HISTORY_GROUP = "recorders"
EVENTS_MAXLEN = 256
"""About how many entries a job's stream keeps (a check reports at most a few dozen)."""


def finish_keys(job_id: str, organization_id: str, fingerprint: str | None, *, remember: bool) -> list[str]:
    """The KEYS of ``worker/lua/finish.lua``; ``remember``: as the latest result of its test."""
    return [
        RESULT_KEY.format(job_id),
        INFLIGHT_KEY.format(organization_id),
        COALESCE_KEY.format(fingerprint) if fingerprint else "",
        RECENT_KEY.format(fingerprint) if fingerprint and remember else "",
        JOB_KEY.format(job_id),  # says whether the result goes into the source's history
        HISTORY_STREAM,
        EVENTS_KEY.format(job_id),
        WATCH_KEY.format(job_id),
    ]


def finish_args(job_id: str, record: str, ttl: int) -> list[str | int]:
    """The ARGV of ``worker/lua/finish.lua``."""
    return [record, ttl, job_id, UPDATES_CHANNEL.format(job_id), EVENTS_MAXLEN]
