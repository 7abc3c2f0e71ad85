"""Every Redis key genqueue writes, in one place (arq's keys.py is the model). Keys of one queue share the
`{queue}` hash tag where several are touched by one MULTI or Lua script, so they sit in one Cluster slot.

RQ's own keys (rq:job:<id>, rq:queue:<q>, rq:wip:<q>, rq:scheduled:<q>, rq:failed:<q>, rq:execution:…,
rq:results:<id>, rq:workers…) belong to RQ; the few genqueue builds by hand are at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- the dead-letter queue (dlq/) ----------------------------------------------------------------------------
# genqueue:dlq:{<queue>}:e:<id> | all | by:<field>:<value> | stats (the indexed fields: `dlq.entry.index_values`)


@dataclass(frozen=True, slots=True)
class DLQKeys:
    queue: str

    @property
    def prefix(self) -> str:
        return f"genqueue:dlq:{{{self.queue}}}:"

    @property
    def dlq_name(self) -> str:
        return f"{self.queue}-dlq"

    def entry(self, job_id: str) -> str:
        return f"{self.prefix}e:{job_id}"

    @property
    def all(self) -> str:
        return f"{self.prefix}all"

    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    def index(self, field: str, value: str) -> str:
        return f"{self.prefix}by:{field}:{value}"


# -- workers (liveness.py, sweep.py) ---------------------------------------------------------------------
WORKERS = "genqueue:workers"  # SET of genqueue worker names


def alive(worker: str) -> str:
    """STRING with a TTL of GENQUEUE_LIVENESS_TTL, refreshed by the worker's heartbeat."""
    return f"genqueue:alive:{worker}"


def worker_tasks(worker: str) -> str:
    """HASH task name → its catalogue entry (JSON: signature, options), written by the worker at start
    (tasks/catalogue.py); read only while the worker's alive key exists, deleted when it stops or is pruned."""
    return f"genqueue:worker-tasks:{worker}"


def dead_seen(worker: str) -> str:
    """STRING: when a sweep first found the worker's alive key gone (EX 1 h)."""
    return f"genqueue:dead-seen:{worker}"


def claims(worker: str) -> str:
    """HASH: the worker's current claims as its last beat saw them (started-registry member -> 1) and the beat's
    sequence number (CLAIMS_BEAT field); TTL of GENQUEUE_LIVENESS_TTL."""
    return f"genqueue:claims:{worker}"


CLAIMS_BEAT = "@beat"


def unclaimed_seen(started_key: str) -> str:
    """HASH started-registry member -> "<beat>:<time>": when a sweep first found it held by a live worker that
    no longer lists it among its claims (after a failover's rollback)."""
    return f"genqueue:unclaimed-seen:{started_key}"


DURABLE_CHANNEL = "genqueue:durable"  # PUBLISHed before a WAIT that confirms earlier writes (durable.py)


def sweep_lock(queue: str) -> str:
    """STRING NX PX: one sweeper per queue per interval."""
    return f"genqueue:sweep-lock:{{{queue}}}"


def stranded_seen(queue: str) -> str:
    """HASH job id -> first time seen in RQ's intermediate list."""
    return f"genqueue:stranded-seen:{{{queue}}}"


METRICS_PREFIX_HEAD = "genqueue:metrics:{"  # + queue + "}" (Lua builds it from a job's origin)


def metrics(queue: str) -> str:
    """HASH of counters incremented inside the transaction of the move they count (`backend/counters.py`)."""
    return f"{METRICS_PREFIX_HEAD}{queue}}}"


# -- maintenance (dlq/maintenance.py) --------------------------------------------------------------------
SCHEDULER_LOCK = "genqueue:scheduler-lock"  # STRING: one `genqueue scheduler` runs the passes


def alerted(queue: str, alert: str) -> str:
    """STRING EX cooldown: this alert fired recently."""
    return f"genqueue:alerted:{{{queue}}}:{alert}"


# -- admin and product state -----------------------------------------------------------------------------
AUDIT = "genqueue:audit"  # STREAM (capped) of admin actions
RUN_PREFIX = "genqueue:run:"  # HASH per run: queue, items, digest, options, tenant, retry counter


def run(run_id: str) -> str:
    return f"{RUN_PREFIX}{run_id}"


def credits(tenant: str) -> str:
    """STRING: a tenant's retry-credit balance (absent: unlimited)."""
    return f"genqueue:credits:{tenant}"


TENANT_WEIGHTS = "genqueue:tenants:weight"  # HASH tenant -> its weight in the fair pop (absent: 1)


def fair(queue: str) -> str:
    """genqueue:fair:{<queue>}: + lane:<priority>:<tenant> | ring:<priority> | used:<priority> | n
    (tenants/lua/fair.lua says what each holds)."""
    return f"genqueue:fair:{{{queue}}}:"


RATE_LIMIT_PREFIX = "genqueue:ratelimit"  # the `limits` library's windows (per sub, per address)


def login_code(code: str) -> str:
    """STRING EX 300: a one-time dashboard login (`genqueue api token --login`), deleted when used."""
    return f"genqueue:login:{code}"


def session(sid: str) -> str:
    """STRING EX 8 h: a dashboard session (principal and CSRF token), behind an HttpOnly cookie."""
    return f"genqueue:session:{sid}"


# -- the producer's side of a job (jobs/cancel.py, worker/cancel.py) ------------------------------------------
CANCEL_PREFIX = "genqueue:cancel:"


def cancel_request(job_id: str) -> str:
    """STRING EX CANCEL_RECORD_TTL_S: a cancel accepted for a running job (JSON: by, at, reason); the moves that
    end its attempt check it and land the job in `canceled` instead."""
    return f"{CANCEL_PREFIX}{job_id}"


def cancel_hook(job_id: str) -> str:
    """STRING EX 7 d: the canceled job's `on_cancel` hook has run (SET NX: once, worker/cancel_hook.py)."""
    return f"genqueue:cancel-hook:{job_id}"


RQ_CANCELED_PREFIX = "rq:canceled:"


EVENTS_PREFIX = "genqueue:events:"  # Lua scripts spell it too (backend/events.py LUA_XADD)


def events(job_id: str) -> str:
    """STREAM (capped, EX EVENTS_TTL_S from its last event): the job's events, appended by its moves."""
    return f"{EVENTS_PREFIX}{job_id}"


# Completion webhooks (webhooks/): a job's subscription, the relay's schedule and lock, per-tenant secrets.
WEBHOOK_SUBS = "genqueue:webhooks:subs"  # HASH job id -> JSON {url, events, tenant, at}
WEBHOOK_CURSOR_PREFIX = "genqueue:webhooks:cursor:"


def webhook_cursor(job_id: str) -> str:
    """STRING: the last event of the job's stream the relay handled (one key per job: WATCHed by the relay
    without conflicting with other jobs' subscriptions)."""
    return f"{WEBHOOK_CURSOR_PREFIX}{job_id}"


WEBHOOK_DUE = "genqueue:webhooks:due"  # ZSET job id -> when the relay next reads its stream (unix s)
WEBHOOK_RELAY_LOCK = "genqueue:webhooks:relay-lock"  # STRING: one relay at a time (PX)
WEBHOOK_SECRETS = "genqueue:webhooks:secrets"  # HASH tenant -> its whsec_ secret (set by an admin)


def rq_canceled(queue: str) -> str:
    """RQ's CanceledJobRegistry: `rq info` counts canceled jobs from it."""
    return f"{RQ_CANCELED_PREFIX}{queue}"


# -- RQ keys genqueue builds itself -------------------------------------------------------------------------


def rq_job(job_id: str) -> str:
    return f"rq:job:{job_id}"


RQ_JOB_PREFIX = "rq:job:"
RQ_EXECUTION_PREFIX = "rq:execution:"  # + <job_id>:<execution_id>
RQ_QUEUES = "rq:queues"


RQ_QUEUE_PREFIX = "rq:queue:"


def rq_queue(queue: str) -> str:
    return f"{RQ_QUEUE_PREFIX}{queue}"


RQ_SCHEDULED_PREFIX = "rq:scheduled:"


def rq_scheduled(queue: str) -> str:
    return f"{RQ_SCHEDULED_PREFIX}{queue}"


def rq_scheduler_lock(queue: str) -> str:
    """RQ's own scheduler lock: genqueue's due-job mover takes the same key, so they exclude each other."""
    return f"rq:scheduler-lock:{queue}"


# -- the simulated provider's shared limit (GENQUEUE_SIM_RATE_LIMIT), a stand-in for a real API's --------
SIM_WINDOW = "genqueue:sim:window"  # ZSET: the calls of the current window
SIM_STATS = "genqueue:sim:stats"  # HASH: calls, rate_limited (what the provider saw)


def sim_down(flag: str) -> str:
    """STRING: while it exists, the simulated outcome `down_while=<flag>` answers 503."""
    return f"genqueue:sim:down:{flag}"


# -- provider limits (limits/lua/limits.lua lists the keys under each prefix) -------------------------------
LIMITS_KNOWN = "genqueue:limits"  # SET of limit keys ever used or configured
LIMITS_WAKE = "genqueue:limits:wake"  # ZSET limit key -> when to look at its parked jobs again (ms)
# ZSET "<limit key>\n<tenant>\n<job id>" -> the parked job's max_wait deadline (ms); limits.lua spells it too
LIMITS_DEADLINES = "genqueue:limits:deadlines"
LIMIT_PREFIX_HEAD, LIMIT_PREFIX_TAIL = "genqueue:limit:{", "}:"
PARKED = "genqueue:parked"  # HASH queue -> how many of its jobs are parked (limits.lua spells it too)


def limit_prefix(key: str) -> str:
    """genqueue:limit:{<key>}: + cfg | slots | win | pause | ring | parked:<tenant> | stats"""
    return f"{LIMIT_PREFIX_HEAD}{key}{LIMIT_PREFIX_TAIL}"


# -- usage and budgets (usage/) -------------------------------------------------------------------------------
# Written at settle time by the script that ends an attempt (usage/lua/record.lua), read by `genqueue usage`,
# GET /api/usage and the budget checks. Amounts are HINCRBYFLOAT floats; a job with no tenant counts under
# tenants.fairness.NO_TENANT ("*"). Units: tokens (input + output), input_tokens, output_tokens, images, usd.
USAGE_PREFIX = "genqueue:usage:"
USAGE_FIELD_SEP = "\t"  # field of an hour bucket: tenant \t task \t limit key ("" when none) \t unit
USAGE_HOUR_TTL_S = 35 * 86400
USAGE_DAY_TTL_S = 3 * 86400
USAGE_MONTH_TTL_S = 40 * 86400


def usage_hour(hour: int) -> str:
    """HASH of one hour's usage (hour = unix seconds // 3600): "tenant\\ttask\\tkey\\tunit" -> amount."""
    return f"{USAGE_PREFIX}h:{hour}"


def usage_tenant_day(tenant: str, day: int) -> str:
    """HASH of a tenant's usage in one UTC day (day = unix seconds // 86400): unit -> amount (budgets' /d)."""
    return f"{USAGE_PREFIX}tenant:{tenant}:d:{day}"


def usage_tenant_month(tenant: str, month: str) -> str:
    """HASH of a tenant's usage in one UTC calendar month (month = "YYYYMM"): unit -> amount (budgets' /month)."""
    return f"{USAGE_PREFIX}tenant:{tenant}:m:{month}"


BUDGETS = "genqueue:budgets"  # HASH tenant -> JSON of its budgets (usage/budgets.py)
BUDGET_BREACHES = "genqueue:budgets:breaches"  # HASH: "unit:period" -> breaches counted; "refused"/"parked" -> jobs


def budget_breach(tenant: str, unit: str, period: str, period_id: str) -> str:
    """STRING marker set NX by the first enqueue that finds the cap reached: the breach is logged and counted
    once per tenant, unit and period (expires with the period's usage bucket)."""
    return f"genqueue:budgets:breach:{tenant}:{unit}:{period}:{period_id}"
