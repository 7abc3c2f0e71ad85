"""Completion webhooks: the URL rules, the subscription kept with a job, the relay from a job's event stream to
delivery jobs, and the built-in delivery task (genqueue.webhook) that signs and POSTs each event."""
