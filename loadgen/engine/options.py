"""loadgen's command-line options, and their validation into the settings every process works from.

The options are added to Locust's own parser, so they work on the command
line, in the environment (``LOCUST_*``), in config files and in the web UI's
form. Two functions check them, for every way in:

- ``form_values`` turns the web form's raw strings into values with the
  parser's own conversion (the very code argparse runs for the command
  line), an empty field meaning the option's default. Locust's form handler
  would otherwise pass an option whose default is None as a raw string.
- ``refusals`` checks a whole set of options (``RunSettings.from_options``,
  the user count, the shard tags): a bad value is refused with a message
  that names the option, before any sandbox exists.

A new option is one ``add_argument`` line below (and a check in
``refusals`` or ``RunSettings`` if it has rules): the form picks it up.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Mapping, Optional

from loadgen.engine.schedule import MODES, SANDBOXES_OPTION, Schedule, optional_float, schedule_from_options
from loadgen.providers.base import ProviderSettings
from loadgen.providers.prices import Price, PriceFileError, price_for
from loadgen.report.cost import estimate


# How long a worker waits for a silent master before it ends its run on its own: well above a short
# network blip, and above the seconds a busy master may take to answer.
MASTER_HEARTBEAT_TIMEOUT_S = 30.0
MASTER_HEARTBEAT_TIMEOUT_MIN_S = 5.0


def add_arguments(parser) -> None:
    """Add loadgen's options to Locust's parser (the wiring registers this on ``init_command_line_parser``)."""
    # Locust's own parser (not an argument group) understands include_in_web_ui.
    group = parser
    group.add_argument("--run-dir", default="./runs", help="Where run directories go (default ./runs).")
    group.add_argument("--run-id", default="", help="Run id (default: <UTC time>-<short commit>-<provider>).",
                       include_in_web_ui=False)
    group.add_argument("--create-timeout", type=float, default=60.0, help="Seconds a create may take (default 60).")
    group.add_argument("--command-timeout", type=float, default=30.0,
                       help="Seconds the readiness and liveness command may take (default 30).")
    group.add_argument("--destroy-timeout", type=float, default=30.0, help="Seconds a destroy may take (default 30).")
    group.add_argument("--late-create-window", type=float, default=120.0,
                       help="Seconds to wait, after a create timed out, for its late answer so that the sandbox "
                            "is destroyed rather than leaked (default 120).")
    group.add_argument("--hold", type=float, default=0.0, help="Minimum seconds each sandbox is held (default 0).")
    group.add_argument("--barrier-timeout", type=float, default=600.0,
                       help="Seconds after the start at which the hold barrier releases even if not every "
                            "sandbox finished phase 1 (default 600).")
    group.add_argument("--probe-spread", type=float, default=0.0,
                       help="Spread the liveness probes over this many seconds after release (default 0).")
    group.add_argument("--template", default="", help="Template, snapshot or image to create sandboxes from.")
    group.add_argument("--readiness-command", default="node -v",
                       help="Command for the readiness and liveness probes (default 'node -v').")
    group.add_argument("--reuse-probe", action="store_true", default=False,
                       help="Before the first node -v, inside the timed readiness window, read the sandbox's "
                            "identity and check for a marker an earlier sandbox left: a reused container fails "
                            "the iteration (error code container_reused).")
    group.add_argument("--sandbox-lifetime", type=int, default=0,
                       help="Lifetime in seconds requested for each sandbox; must outlast the run "
                            "(default: barrier timeout + hold + every phase timeout + 10 minutes).")
    group.add_argument("--min-success-rate", type=float, default=None,
                       help="Exit non-zero if the success rate (0..1) is below this.")
    group.add_argument("--label", default="", help="A name for this run, shown in reports, compare, Postgres and "
                                                   "the web UI (e.g. 'baseline' or 'after the pool fix').")
    group.add_argument("--group-id", default="", help="Group tag shared by the shards of one sharded run.")
    group.add_argument("--shard-index", type=int, default=None, help="This shard's index in its group.")
    group.add_argument("--shard-count", type=int, default=None, help="Number of shards in the group.")
    group.add_argument("--commit-sha", default="", help="Commit of the code under test (default: git or $GITHUB_SHA).",
                       include_in_web_ui=False)
    group.add_argument("--database-url", default="", include_in_web_ui=False,
                       help="Postgres URL for the results sink (default $DATABASE_URL). Prefer the environment "
                            "variable: a password in the URL would show in the process list.")
    group.add_argument("--emulator-url", default="",
                       help="Point the provider's SDK at a loadgen emulator at this URL instead of the real service "
                            "(set on the command line: the web form shows it but cannot change it).")
    group.add_argument("--bucket", default="", help="S3-compatible bucket for the object-store sink.")
    group.add_argument("--prefix", default="", help="Key prefix inside the bucket.")
    group.add_argument("--destroy-retries", type=int, default=3,
                       help="After a failed destroy, retry it this many times, 1 s, 2 s, 4 s ... apart "
                            "(default 3; 0 = never).")
    group.add_argument("--max-cost", type=float, default=None,
                       help="Refuse to start when the worst case (sandboxes × lifetime × price) is above "
                            "this many US dollars (default: no limit).")
    group.add_argument("--price-file", default="",
                       help="JSON file of prices per provider in $ per sandbox-second, replacing the built-in "
                            "table (see README, Cost).")
    group.add_argument("--mode", default="burst", choices=MODES,
                       help="burst: every sandbox at once (default); staggered: one every --stagger-ms; "
                            "sequential: one at a time across the whole run, never two alive at once (or --concurrency "
                            "at a time).")
    group.add_argument("--concurrency", type=int, default=1,
                       help="With --mode sequential: this many sandboxes at a time, each start waiting for an "
                            "earlier life to end (a closed model; default 1).")
    group.add_argument("--stagger-ms", type=float, default=200.0,
                       help="Milliseconds between two starts in --mode staggered (default 200).")
    group.add_argument("--arrival-rate", type=float, default=None,
                       help="Open arrival model: this many creates per second across the whole run, on a "
                            "schedule fixed by the master and independent of answers (default: off).")
    group.add_argument("--worker-heartbeat-timeout", type=float, default=WORKER_HEARTBEAT_TIMEOUT_S,
                       help="Seconds without a heartbeat before the master counts a worker as lost (default "
                            f"{WORKER_HEARTBEAT_TIMEOUT_S:g}; Locust's own 3 s is missed by a worker busy "
                            "starting thousands of sandboxes).")
    group.add_argument("--ramp", type=float, default=0.0,
                       help="With --arrival-rate: rise linearly from 0 to the rate over this many seconds "
                            "(default 0).")
    group.add_argument("--master-heartbeat-timeout", type=float, default=MASTER_HEARTBEAT_TIMEOUT_S,
                       help="(workers) Seconds without a heartbeat from the master before a worker counts it as "
                            "lost: it ends its holds, destroys what it holds and quits, keeping its journal for "
                            f"loadgen recover (default {MASTER_HEARTBEAT_TIMEOUT_S:g}).")


def print_options(argv=None) -> int:
    """`loadgen options`: print the run options above, as ``locust -f locustfiles/<provider>.py`` takes them.

    Locust prints its ``--help`` before it reads the locustfile, so that help
    never lists the options a locustfile adds; this prints them from the same
    ``add_argument`` lines the run uses."""
    from locust.argument_parser import LocustArgumentParser

    from loadgen.engine.embedded import add_local_arguments

    if argv and any(a not in ("options", "-h", "--help") for a in argv[1:]):
        print("usage: loadgen options", file=sys.stderr)
        return 2
    run = LocustArgumentParser(prog="locust -f locustfiles/<provider>.py", add_help=False,
                               usage="locust -f locustfiles/<provider>.py [Locust's options] [loadgen's options]",
                               description="loadgen's run options (Locust's own: locust --help). Each may also be "
                                           "set as LOCUST_<NAME> in the environment or in a Locust config file.")
    add_arguments(run)
    local = LocustArgumentParser(prog="locust -f locustfiles/local.py", add_help=False,
                                 usage="locust -f locustfiles/local.py [options]",
                                 description="locustfiles/local.py also takes (it starts its own emulator):")
    add_local_arguments(local)
    print(run.format_help())
    print(local.format_help().rstrip())
    return 0


# A worker that starts thousands of sandboxes at once on a busy host can hold its hub for seconds (every
# user's first request is built and sent before the hub polls again), long enough to miss Locust's
# 3 heartbeats; the master would count every worker lost and stop a healthy burst. A lost worker is
# still found, this many seconds after its last heartbeat.
WORKER_HEARTBEAT_TIMEOUT_S = 30.0
DESTROY_RETRY_FIRST_WAIT_S = 1.0  # then doubled before each further retry


def destroy_retry_waits(retries: int) -> list[float]:
    """The waits before each destroy retry: 1 s, 2 s, 4 s, ... (bounded by --destroy-retries)."""
    return [DESTROY_RETRY_FIRST_WAIT_S * 2 ** i for i in range(retries)]


def destroy_budget_s(destroy_timeout_s: float, retries: int) -> float:
    return (1 + retries) * (destroy_timeout_s + 1.0) + sum(destroy_retry_waits(retries))


@dataclass
class RunSettings:
    """The validated options every process of a run works from."""

    provider: str
    create_timeout_s: float
    command_timeout_s: float
    destroy_timeout_s: float
    late_create_window_s: float
    hold_s: float
    barrier_timeout_s: float
    probe_spread_s: float
    template: Optional[str]
    readiness_command: str
    sandbox_lifetime_s: int
    min_success_rate: Optional[float]
    reuse_probe: bool = False
    worker_heartbeat_timeout_s: float = WORKER_HEARTBEAT_TIMEOUT_S
    master_heartbeat_timeout_s: float = MASTER_HEARTBEAT_TIMEOUT_S
    schedule: Schedule = field(default_factory=Schedule)
    destroy_retries: int = 3
    max_cost_usd: Optional[float] = None
    price: Optional[Price] = None

    @property
    def commands_per_life(self) -> int:
        """Commands a sandbox runs: readiness and liveness, and the reuse probe when it is on."""
        return 3 if self.reuse_probe else 2

    @classmethod
    def from_options(cls, options, provider: str) -> "RunSettings":
        errors = []

        def positive(name, value, allow_zero=False):
            if value is None or value < 0 or (value == 0 and not allow_zero):
                errors.append(f"--{name.replace('_', '-')} must be {'>= 0' if allow_zero else '> 0'} (got {value})")
            return value

        create = positive("create_timeout", options.create_timeout)
        command = positive("command_timeout", options.command_timeout)
        destroy = positive("destroy_timeout", options.destroy_timeout)
        late = positive("late_create_window", options.late_create_window, allow_zero=True)
        hold = positive("hold", options.hold, allow_zero=True)
        barrier = positive("barrier_timeout", options.barrier_timeout)
        spread = positive("probe_spread", options.probe_spread, allow_zero=True)
        heartbeat = getattr(options, "worker_heartbeat_timeout", WORKER_HEARTBEAT_TIMEOUT_S)
        if heartbeat is None or not heartbeat >= 1:
            errors.append(f"--worker-heartbeat-timeout must be >= 1 s (got {heartbeat})")
        rate = options.min_success_rate
        if rate is not None and not 0.0 <= rate <= 1.0:
            errors.append(f"--min-success-rate must be between 0 and 1 (got {rate})")
        if not (options.readiness_command or "").strip():
            errors.append("--readiness-command must not be empty")
        retries = getattr(options, "destroy_retries", 3)
        if retries is None or retries < 0:
            errors.append(f"--destroy-retries must be >= 0 (got {retries})")
            retries = 0
        master_silence = getattr(options, "master_heartbeat_timeout", MASTER_HEARTBEAT_TIMEOUT_S)
        if master_silence is None or not master_silence >= MASTER_HEARTBEAT_TIMEOUT_MIN_S:
            errors.append(f"--master-heartbeat-timeout must be at least {MASTER_HEARTBEAT_TIMEOUT_MIN_S:g} s "
                          f"(got {master_silence}): a master busy for a few seconds is not lost")
            master_silence = MASTER_HEARTBEAT_TIMEOUT_S
        max_cost = optional_float(options, "max_cost", errors)
        if max_cost is not None and not max_cost >= 0:
            errors.append(f"--max-cost must be >= 0 US dollars (got {max_cost})")
        try:
            price = price_for(provider, getattr(options, "price_file", "") or None)
        except PriceFileError as exc:
            errors.append(str(exc))
            price = None
        schedule = schedule_from_options(options, errors)
        # the run's size: sent by the master to its workers, whose own command line has no -u
        span = schedule.span_s(int(getattr(options, SANDBOXES_OPTION, 0) or getattr(options, "num_users", 0) or 0))
        needed = int((barrier or 0) + span + (hold or 0) + (spread or 0) + (create or 0) + (late or 0)
                     + (3 if getattr(options, "reuse_probe", False) else 2) * (command or 0)
                     + destroy_budget_s(destroy or 0, retries) + 600)
        lifetime = options.sandbox_lifetime or needed
        if options.sandbox_lifetime and options.sandbox_lifetime < (barrier or 0) + span + (hold or 0):
            errors.append(f"--sandbox-lifetime {options.sandbox_lifetime} s is shorter than the barrier timeout "
                          f"plus the schedule's span plus hold ({(barrier or 0) + span + (hold or 0):g} s): "
                          "sandboxes would expire mid-hold")
        if errors:
            raise ValueError("; ".join(errors))
        return cls(provider, create, command, destroy, late, hold, barrier, spread, options.template or None,
                   options.readiness_command, lifetime, rate,
                   reuse_probe=bool(getattr(options, "reuse_probe", False)), worker_heartbeat_timeout_s=heartbeat or WORKER_HEARTBEAT_TIMEOUT_S,
                   master_heartbeat_timeout_s=master_silence, schedule=schedule,
                   destroy_retries=retries, max_cost_usd=max_cost, price=price)

    def cost_estimate(self, sandboxes: int) -> dict:
        """The run's worst case (loadgen.report.cost): every sandbox living its whole lifetime."""
        return estimate(sandboxes, self.sandbox_lifetime_s, self.price)

    def cost_refusal(self, sandboxes: int) -> Optional[str]:
        """Why --max-cost refuses this run, or None."""
        if self.max_cost_usd is None:
            return None
        est = self.cost_estimate(sandboxes)
        if est["usd"] is None:
            return (f"--max-cost {self.max_cost_usd:g} cannot be checked: no price is known for {self.provider}; "
                    "give one with --price-file")
        if est["usd"] > self.max_cost_usd:
            return (f"the worst case, ${est['usd']:,.2f}, is above --max-cost ${self.max_cost_usd:,.2f}; "
                    "fewer sandboxes, a shorter --sandbox-lifetime or shorter timeouts lower it")
        return None

    @property
    def destroy_budget_s(self) -> float:
        """The longest a destroy can take: the first attempt and every retry at their timeouts, and the backoff."""
        return destroy_budget_s(self.destroy_timeout_s, self.destroy_retries)

    def barrier_deadline_s(self, sandboxes: int) -> float:
        """The hold barrier's deadline after the start: --barrier-timeout after the last scheduled start."""
        return self.barrier_timeout_s + self.schedule.span_s(sandboxes)

    def provider_settings(self, users_in_process: int, base_url: Optional[str]):
        from loadgen.providers.base import ProviderSettings

        return ProviderSettings(
            template=self.template,
            sandbox_lifetime_s=self.sandbox_lifetime_s,
            create_timeout_s=self.create_timeout_s,
            command_timeout_s=self.command_timeout_s,
            destroy_timeout_s=self.destroy_timeout_s,
            late_create_window_s=self.late_create_window_s,
            users_in_process=users_in_process,
            base_url=base_url,
        )


LABEL_LIMIT = 200


class _Names:
    """Stands in for Locust's parser to learn which options ``add_arguments`` adds."""

    def __init__(self):
        self.names: list[str] = []

    def add_argument(self, *flags, **kwargs) -> None:
        self.names.append(kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_"))


def option_names() -> list[str]:
    """loadgen's option names (dests), in the order ``add_arguments`` adds them (for the report's table)."""
    names = _Names()
    add_arguments(names)
    return names.names


def flag_of(action) -> str:
    """The option as a user types it (``--create-timeout``)."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    return (longs or action.option_strings or [action.dest])[0]


def form_values(parser, form: Mapping[str, str], dests) -> tuple[dict, list[str]]:
    """The web form's fields for the options ``dests``, converted as the command line converts them.

    Returns (values by dest, error messages). A field absent from the form is
    left out (the option keeps its value); an empty field means the option's
    default; anything else goes through argparse's own conversion and choice
    check, so a bad value gets the command line's message
    ("argument --create-timeout: invalid float value: 'abc'")."""
    actions = {a.dest: a for a in parser._actions}
    values, errors = {}, []
    for dest in dests:
        if dest not in form or dest not in actions:
            continue
        action, raw = actions[dest], (form.get(dest) or "").strip()
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            values[dest] = raw == "true" if raw else action.default
        elif raw == "":
            values[dest] = action.default
        else:
            try:
                values[dest] = parser._get_values(action, [raw])  # argparse's conversion and choice check
            except argparse.ArgumentError as exc:
                errors.append(str(exc))
    return values, errors


def refusals(options, provider: str, users: Optional[int] = None) -> list[str]:
    """Every reason to refuse these options before anything is created (empty: go).

    ``users`` is the number of users asked for, when it is known (the form's, or
    ``-u`` of a run that starts by itself)."""
    errors = []
    try:
        settings = RunSettings.from_options(options, provider)
    except ValueError as exc:
        settings = None
        errors.extend(str(exc).split("; "))
    if settings is not None and users:
        refusal = settings.cost_refusal(int(users))
        if refusal:
            errors.append(f"refusing to start: {refusal}")
    if users is not None and users < 1:
        errors.append(f"the number of users (-u) must be at least 1 (got {users}): each user is one sandbox")
    index, count = getattr(options, "shard_index", None), getattr(options, "shard_count", None)
    if count is not None and count < 1:
        errors.append(f"--shard-count must be at least 1 (got {count})")
    if index is not None and (count is None or not 0 <= index < max(count, 1)):
        errors.append(f"--shard-index must be between 0 and --shard-count - 1 (got index {index}, count {count})")
    if index is None and count is not None:
        errors.append("--shard-count needs --shard-index (this shard's place in the group)")
    label = getattr(options, "label", "") or ""
    if len(label) > LABEL_LIMIT:
        errors.append(f"--label must be at most {LABEL_LIMIT} characters (got {len(label)})")
    return errors
