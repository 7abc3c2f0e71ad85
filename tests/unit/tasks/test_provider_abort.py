"""providers/abort.py against the httpx versions installed: the pool attribute it sets exists on httpx's and on
the openai SDK's httpx2 transports, and outside a job nothing is watched."""

import httpx
import openai

from genqueue.tasks.providers.abort import _Backend, abort_on_cancel, abortable_transport, httpx_of


def test_the_pool_attribute_exists_on_both_httpx_packages():
    for http in (httpx, httpx_of(openai.DefaultHttpxClient)):
        plain = http.HTTPTransport()
        assert hasattr(plain._pool, "_network_backend"), http.__name__  # the attribute abortable_transport sets
        assert isinstance(abortable_transport(http)._pool._network_backend, _Backend)


def test_outside_a_job_a_call_runs_as_it_is():
    with abort_on_cancel():
        value = 1 + 1
    assert value == 2
