"""RQ objects built one way everywhere: JSON serializer on every queue, job and worker. Never pickle."""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.exceptions import DeserializationError, TimeoutFormatError
from rq.job import Job
from rq.serializers import JSONSerializer

SERIALIZER = JSONSerializer
DEFAULT_JOB_TIMEOUT_S = 180
RESULT_TTL_S = 24 * 3600  # finished jobs stay inspectable (`genqueue jobs show`) for a day
# What reading a job hash raises when its data is not what genqueue writes: plain RQ's pickle (RQ's
# DeserializationError), fields of the wrong type, or nesting past the stack (RecursionError). Readers
# (status, the sweep) catch these and show or skip the job as unreadable; never a traceback.
UNREADABLE_JOB_ERRORS: tuple[type[BaseException], ...] = (
    DeserializationError,
    TimeoutFormatError,  # a timeout field RQ cannot parse ("abc")
    AssertionError,  # RQ's parse_timeout asserts on what it cannot read
    ArithmeticError,  # one it parses too large (1e30 → OverflowError)
    RecursionError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
)


def make_queue(connection: Redis, name: str) -> Queue:
    return Queue(name, connection=connection, serializer=SERIALIZER)


def fetch_job(connection: Redis, job_id: str) -> Job | None:
    from rq.exceptions import NoSuchJobError

    try:
        return Job.fetch(job_id, connection=connection, serializer=SERIALIZER)
    except NoSuchJobError:
        return None
