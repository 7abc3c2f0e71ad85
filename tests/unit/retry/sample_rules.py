"""Classification rules as a user would ship them, for GENQUEUE_RETRY_RULES."""

from genqueue.retry import ErrorKind


def quota_is_permanent(exc):
    return ErrorKind.PERMANENT if "quota" in str(exc) else None


RULES = [quota_is_permanent]
