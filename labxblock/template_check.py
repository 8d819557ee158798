"""Templates checked by the cloud, for Studio: each provider validates its template, answers cached.

``authoring`` checks what can be checked here (YAML, the ``run`` parameter, the
contract's outputs); this asks each provider a lab may run on whether it would
create the template (Heat's template-validate; the local provider its own format),
and turns the answer into the same warnings. Saving is never blocked: a cloud that
cannot be asked is a warning that says so. The time is bounded by the provider's
timeouts (a short connect timeout on this path). Answers are cached by the digest
of what was asked, so Studio rendering a component again does not ask again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from labxblock import authoring, clouds
from labxblock.authoring import Problem, Reader
from labxblock.conf import LabSettingsError, ProviderSettings, get_settings
from labxblock.providers.base import ProviderError, TemplateProblem, ValidationUnsupported

log = logging.getLogger(__name__)
_ = authoring._  # marks messages for extraction; the block translates them

ANSWER_SECONDS = 3600  # a cloud's verdict on one template (a new text is a new key)
NOT_CHECKED_SECONDS = 60  # "could not be checked": asked again soon, the cloud may be back
CACHE_PREFIX = "labxblock:template-check:"
GIVEN_PARAMETERS = ("run",)  # what every launch passes (LabSpec.blueprint)

REFUSED_AT = _("Provider {provider} refuses the template {where}, line {line}: {message}")
REFUSED = _("Provider {provider} refuses the template {where}: {message}")
NOT_CHECKED = _("The template {where} could not be checked by provider {provider}: the cloud did not "
                "answer. This does not stop you saving; it is checked again when you save or reopen it.")


@dataclass(frozen=True)
class Verdict:
    """What one provider said of one template: checked (with its problems) or not, and why not."""

    checked: bool
    problems: tuple[TemplateProblem, ...] = ()
    supported: bool = True

    def as_json(self) -> dict[str, Any]:
        return {"checked": self.checked, "supported": self.supported,
                "problems": [[p.message, p.line, p.column] for p in self.problems]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(bool(data["checked"]), tuple(TemplateProblem(*p) for p in data["problems"]),
                   bool(data["supported"]))


def digest(provider: ProviderSettings, template: str, environment: str | None) -> str:
    """The cache key of one question: the same provider, configured the same, asked about the same text.

    The provider's configuration is in it (hashed, never stored), so a site pointed at
    another cloud asks that cloud.
    """
    asked = json.dumps([provider.name, provider.type, dict(provider.options), template, environment or "",
                        GIVEN_PARAMETERS], sort_keys=True, default=str)
    return CACHE_PREFIX + hashlib.sha256(asked.encode()).hexdigest()


def verdict(provider: str, template: str, environment: str | None) -> Verdict:
    """The provider's verdict on ``template`` (cached); never raises for a cloud's trouble."""
    key = digest(get_settings().providers[provider], template, environment)
    cached = cache.get(key)
    if cached is not None:
        return Verdict.from_json(cached)
    try:
        problems = clouds.provider(provider).validate(template, environment, GIVEN_PARAMETERS)
        found = Verdict(True, tuple(problems))
    except ValidationUnsupported:
        found = Verdict(False, supported=False)
    except ProviderError as exc:  # unreachable, auth refused…: the operator's to fix, not the author's
        log.warning("labxblock: template check on provider %s could not run: %s", provider, exc)
        found = Verdict(False)
    except Exception:  # a provider's bug must not break Studio's save
        log.exception("labxblock: template check on provider %s failed", provider)
        found = Verdict(False)
    cache.set(key, found.as_json(), ANSWER_SECONDS if found.checked or not found.supported
              else NOT_CHECKED_SECONDS)
    return found


def _questions(values: Mapping[str, Any], read: Reader,
               known: Collection[str]) -> Iterable[tuple[str, str, str, str | None]]:
    """(provider, where, template, environment) per provider a launch may use, each asked once."""
    seen = set()
    for source in authoring.sources(values):
        if source.name not in known or not source.template.strip():
            continue  # authoring already says so
        template = authoring.load_text(source.template, read)
        environment = authoring.load_text(source.environment, read) if source.environment.strip() else None
        if template is None or (environment is None and source.environment.strip()):
            continue  # a missing course file: authoring already says so
        question = (source.name, authoring.where_of(source.template), template, environment)
        if question not in seen:
            seen.add(question)
            yield question


def check(values: Mapping[str, Any], *, read: Reader, local: list[Problem]) -> list[Problem]:
    """``local`` (authoring's problems) with each provider's verdict added.

    A template the cloud answered about loses authoring's YAML warning: the cloud's own
    message names the line too. Without site settings nothing is asked (labxblock.W001 says why).
    """
    try:
        known = get_settings().providers
    except LabSettingsError:
        return list(local)
    field = "providers" if values.get("providers") else "template"
    answered, added = set(), []
    for provider, where, template, environment in _questions(values, read, known):
        found = verdict(provider, template, environment)
        if found.checked:
            answered.add(where)
        elif found.supported:
            added.append(Problem(field, NOT_CHECKED, {"where": where, "provider": provider}))
        for problem in found.problems:
            params = {"provider": provider, "where": where, "message": problem.message, "line": problem.line}
            added.append(Problem(field, REFUSED_AT if problem.line else REFUSED, params))
    def superseded(p: Problem) -> bool:
        return p.message in authoring.YAML_MESSAGES and p.params.get("where") in answered

    return [p for p in local if not superseded(p)] + added
