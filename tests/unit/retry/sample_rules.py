"""Classification rules as a user would ship them, for GENQUEUE_RETRY_RULES."""

from genqueue.retry import ErrorKind, Verdict


def quota_is_permanent(exc):
    return ErrorKind.PERMANENT if "quota" in str(exc) else None


def gpu_busy_waits_a_minute(exc):
    return Verdict(ErrorKind.RATE_LIMITED, retry_after=60) if "GPU busy" in str(exc) else None


RULES = [quota_is_permanent, gpu_busy_waits_a_minute]
