"""Heat's template-validate: reading its answers (pure functions, tested without a cloud), its client.

Heat's ``POST /validate`` answers 400 with its reason when it refuses a template
(YAML errors name a line and column; the others name a place, a resource type or
a section: :mod:`.template_lines` finds their line). When it accepts one, it lists
the parameters, each with its ``Default`` if any: a parameter with neither a default
nor a value from the lab would make the create fail ("The Parameter (x) was not
provided."), so it is reported too. Measured on Heat 27 in the test rig.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from labxblock.providers import template_lines
from labxblock.providers.base import TemplateProblem

# Studio waits for this path while an author saves (template_check bounds the wait of a
# request): a cloud that does not take the connection, or does not answer, is given up
# quickly, so a question in flight never holds its thread for the provider's long timeouts.
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
_NOISE = "Template not in valid format: "  # Heat's prefix to every parse error


def heat_message(exc: Exception) -> str:
    """Heat's own explanation in a heatclient error (the JSON body's message), else the error's text."""
    error = getattr(exc, "error", None)
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        message = error["error"].get("message")
        if message:
            return str(message)
    return str(getattr(exc, "message", None) or exc)


def refusal(template: str, message: str) -> TemplateProblem:
    """Heat's refusal of ``template`` as a problem: its words and the line they name."""
    line, column = template_lines.heat_position(template, message)
    words = message.removeprefix(_NOISE)
    if template_lines.yaml_position(message) is not None:
        words = template_lines.without_marks(words)
    return TemplateProblem(words.strip(), line, column)


def unprovided(template: str, answer: Mapping[str, Any], given: Collection[str],
               environment: Mapping[str, Any]) -> list[TemplateProblem]:
    """Parameters Heat listed with no default that neither the lab nor the environment gives."""
    env_values = {**(environment.get("parameters") or {}), **(environment.get("parameter_defaults") or {})}
    problems = []
    for name, declared in (answer.get("Parameters") or {}).items():
        if not isinstance(declared, Mapping) or "Default" in declared or "Value" in declared:
            continue
        if name in given or name in env_values:
            continue
        problems.append(TemplateProblem(
            f"The Parameter ({name}) was not provided: it has no default, and a lab gives only "
            f"{', '.join(sorted(given)) or 'no parameters'}",
            template_lines.line_of(template, ["parameters", name]),
        ))
    return problems


def client(kwargs: Mapping[str, Any], timeouts: tuple[float, float]) -> Any:
    """A heatclient like the provider's (``kwargs``), sharing its token and connections, with
    :func:`quick_timeouts`."""
    from heatclient import client as heat_client  # deferred: heavy imports, as in the provider
    from keystoneauth1 import session as ks_session

    session = kwargs["session"]
    quick = ks_session.Session(auth=session.auth, session=session.session, verify=session.verify,
                               user_agent="labxblock")
    quick.timeout = quick_timeouts(timeouts)
    return heat_client.Client("1", **{**kwargs, "session": quick})


def quick_timeouts(timeouts: tuple[float, float]) -> tuple[float, float]:
    """(connect, read) for validation: the provider's, each kept short."""
    connect, read = timeouts
    return min(connect, CONNECT_TIMEOUT_SECONDS), min(read, READ_TIMEOUT_SECONDS)
