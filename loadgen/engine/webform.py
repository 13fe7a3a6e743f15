"""The web UI's start form, checked exactly as the command line is, before anything starts.

Locust's own form handler copies each field onto the parsed options as it
comes: an option whose default is None arrives as a raw string, an empty
field overwrites a value (an empty "Emulator Url" once sent a burst to the
real service), and a bad value surfaces only as an exception inside the
spawn, with the UI stuck at RUNNING. loadgen therefore answers the form's
POST itself first (``guard_start``): every loadgen field goes through the
parser's own conversion (``options.form_values``) and the same refusals as
the command line (``options.refusals``); a refusal comes back as the form's
error message and nothing starts. Only a form that passes reaches Locust's
handler, with loadgen's fields already applied and removed from it.
"""

from __future__ import annotations

import argparse
from typing import Mapping, Optional

from loadgen.engine.embedded import embedded_emulator
from loadgen.engine.options import form_values, refusals
from loadgen.sinks import sink_refusals

# Fields of Locust's own form that loadgen leaves to Locust.
LOCUST_FIELDS = ("user_count", "spawn_rate", "host", "run_time", "profile", "user_classes", "shape_class")


def loadgen_fields(parser) -> list[str]:
    """The option fields the form offers beyond Locust's own (loadgen's, and the locustfile's)."""
    from locust.argument_parser import default_args_dict

    locust_own = default_args_dict()
    return [dest for dest in parser.args_included_in_web_ui if dest not in locust_own]


def foreign_fields(parser, form: Mapping[str, str], offered: list[str]) -> list[str]:
    """Fields that name an option the form does not offer (e.g. --database-url): never taken from a form."""
    from locust.argument_parser import default_args_dict

    locust_own = default_args_dict()
    known = {a.dest for a in parser._actions}
    return [k for k in form if k in known and k not in locust_own and k not in offered and k not in LOCUST_FIELDS]


def target_line(controller) -> str:
    """One line saying where this run's sandboxes would be created, for the form, the header and the tab."""
    target = controller.target()
    if target["kind"] == "emulator":
        profile = f", {target['emulator_profile']} profile" if target.get("emulator_profile") else ""
        return f"loadgen emulator at {target['url']}{profile}: no real provider is reached"
    return (f"the REAL {target['provider']} service: every sandbox is created on the account "
            f"of your credentials, and billed")


def host_text(controller) -> str:
    """What Locust shows as the run's Host (its header and the form's Host field)."""
    target = controller.target()
    if target["kind"] == "emulator":
        profile = f" ({target['emulator_profile']})" if target.get("emulator_profile") else ""
        return f"emulator {target['url']}{profile}"
    return f"REAL {target['provider']} service"


def guard_start(controller, form: Mapping[str, str], parser=None) -> tuple[Optional[str], list[str]]:
    """Check a start request from the form; apply its loadgen fields when it passes.

    Returns (refusal message or None, the fields Locust's handler must not see)."""
    if parser is None:
        from locust.argument_parser import get_parser

        parser = get_parser()
    runner = controller.runner
    if runner is not None and runner.state in ("spawning", "running", "stopping", "cleanup"):
        return ("a run is going on: loadgen dispatches each sandbox once, so a running burst cannot be "
                "changed; stop it, then start a new one"), []
    options = controller.options
    offered = loadgen_fields(parser)
    errors = []
    users = None
    raw_users = (form.get("user_count") or "").strip()
    try:
        users = int(raw_users)
    except ValueError:
        errors.append(f"the number of users must be a whole number (got {raw_users!r})")
    host = (form.get("host") or "").strip()
    if host and host != controller.environment.host:
        errors.append("the Host field only shows the target and cannot be changed here: "
                      + ("this locustfile always uses its own emulator" if embedded_emulator() is not None
                         else "use --emulator-url on the command line to point the run at an emulator"))
    embedded = embedded_emulator()
    for name in foreign_fields(parser, form, offered):
        value = (form.get(name) or "").strip()
        if name == "emulator_url" and embedded is not None and value in ("", embedded.url):
            continue
        if value != ("" if getattr(options, name, None) is None else str(getattr(options, name))):
            errors.append(f"--{name.replace('_', '-')} cannot be set from the web form; give it on the command line")
    values, parse_errors = form_values(parser, form, offered)
    errors.extend(parse_errors)
    if "emulator_url" in values and (values["emulator_url"] or "") != (options.emulator_url or ""):
        errors.append(f"the target is fixed when loadgen starts ({target_line(controller)}); the form cannot "
                      "change --emulator-url: start locust again with the --emulator-url you want")
    if not parse_errors:
        candidate = argparse.Namespace(**{**vars(options), **values})
        errors.extend(refusals(candidate, controller.provider_name, users))
        if not errors and users is not None and hasattr(controller, "check_limits"):
            errors.extend(controller.check_limits(users)[0])  # descriptors and ports, as at the start
        if not errors and (candidate.bucket, candidate.prefix) != (options.bucket, options.prefix):
            errors.extend(sink_refusals(candidate))
        if embedded is not None and embedded.external_url and \
                values.get("emulator_profile", options.emulator_profile) != options.emulator_profile:
            errors.append(f"the emulator at {embedded.external_url} was given on the command line: "
                          "its profile is its own and cannot be changed here")
    if errors:
        return "; ".join(errors), []
    if embedded is not None and "emulator_profile" in values:
        try:
            embedded.ensure(values["emulator_profile"])
        except Exception as exc:  # noqa: BLE001 - shown in the form; nothing started
            return f"the emulator could not start with the {values['emulator_profile']} profile: {exc}", []
    for name, value in values.items():
        setattr(options, name, value)
    controller.environment.host = host_text(controller)
    return None, [k for k in form if k in offered or k == "host" or k in foreign_fields(parser, form, offered)]
