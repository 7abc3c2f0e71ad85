"""The pure rule: which credit a canceled job gets back (tenants.credits.credit_to_give_back)."""

from genqueue.tenants.credits import credit_to_give_back


def test_the_last_manual_retry_decides_and_once():
    charged = {"action": "manual_retry", "credit": "acme"}
    free = {"action": "manual_retry", "charged": False}
    attempt = {"n": 1, "kind": "TRANSIENT"}
    assert credit_to_give_back([], None) is None
    assert credit_to_give_back([attempt], None) is None
    assert credit_to_give_back([attempt, charged], None) == ("acme", "2")
    assert credit_to_give_back([attempt, charged, attempt], None) == ("acme", "2")
    assert credit_to_give_back([attempt, charged], "2") is None  # given back already
    assert credit_to_give_back([attempt, charged, attempt, free], None) is None  # the current budget was free
    assert credit_to_give_back([charged, attempt, charged], "1") == ("acme", "3")
