"""GENQUEUE_WAIT_REPLICAS=all: how many replicas it waits for, as replicas come and go (pure)."""

from genqueue.backend.durable import REPLICAS_FORGET_S, remembered


def test_all_remembers_a_missing_replica_for_a_while_then_forgets_it():
    assert remembered(0, 0.0, 2, 10.0) == (2, 10.0)  # two seen
    assert remembered(2, 10.0, 1, 12.0) == (2, 10.0)  # one gone a moment (a failover): still wait for two
    assert remembered(2, 10.0, 0, 12.0) == (2, 10.0)  # a former primary cut off: all of none never counts
    assert remembered(2, 10.0, 1, 10.0 + REPLICAS_FORGET_S + 1) == (1, 10.0 + REPLICAS_FORGET_S + 1)  # gone for good
    assert remembered(1, 50.0, 2, 51.0) == (2, 51.0)  # back, or a new one: wait for it again
