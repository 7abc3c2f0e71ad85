"""What a non-admin sees of a job's status: the same dict without tracebacks."""

from __future__ import annotations

import copy

from genqueue.jobs.status import without_tracebacks


def test_every_traceback_goes_and_everything_else_stays():
    info = {
        "id": "j",
        "status": "dead",
        "last_error": "boom",
        "payload": {"prompt": "p", "traceback": "the user's own field"},
        "history": [
            {"n": 1, "error": {"type": "ProviderError", "message": "boom", "traceback": "Traceback …"}},
            {"action": "manual_retry"},
            {"n": 2, "traceback": "Traceback …", "error": None},
        ],
        "error": {"message": "boom", "traceback": "Traceback …"},
    }
    original = copy.deepcopy(info)
    shown = without_tracebacks(info)
    assert info == original  # a copy: the caller's dict is untouched
    assert shown["history"] == [
        {"n": 1, "error": {"type": "ProviderError", "message": "boom"}},
        {"action": "manual_retry"},
        {"n": 2, "error": None},
    ]
    assert shown["error"] == {"message": "boom"} and shown["payload"] == info["payload"]
    assert {k: v for k, v in shown.items() if k not in ("history", "error")} == {
        k: v for k, v in info.items() if k not in ("history", "error")
    }
