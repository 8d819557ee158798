"""Templates checked by the cloud, for Studio: each provider validates its template, answers cached.

``authoring`` checks what can be checked here (YAML, the ``run`` parameter, the
contract's outputs); this asks each provider a lab may run on whether it would
create the template (Heat's template-validate; the local provider its own format),
and turns the answer into the same warnings. Saving is never blocked: a cloud that
cannot be asked is a warning that says so. A Studio request waits for all its
questions together at most ``CHECK_BUDGET_SECONDS`` (they are asked at once, from a
small pool of threads); a question not answered by then is shown "could not be
checked", and its answer, when it comes, is cached for the next render (the
provider's validation client has short connect and read timeouts of its own).
Answers are cached by the digest of what was asked, so Studio rendering a component
again does not ask again; "could not be checked" for ``NOT_CHECKED_SECONDS``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from labxblock import authoring, clouds
from labxblock.authoring import Problem, Reader
from labxblock.conf import LabSettingsError, ProviderSettings, get_settings
from labxblock.providers.base import Provider, ProviderError, TemplateProblem, ValidationUnsupported

log = logging.getLogger(__name__)
_ = authoring._  # marks messages for extraction; the block translates them

ANSWER_SECONDS = 3600  # a cloud's verdict on one template (a new text is a new key)
NOT_CHECKED_SECONDS = 300  # "could not be checked": not asked again at every render, but soon
CHECK_BUDGET_SECONDS = 5.0  # the most one Studio request waits for all its questions together
ASKING_THREADS = 4  # questions in flight at once in this process (each bounded by its timeouts)
CACHE_PREFIX = "labxblock:template-check:"
GIVEN_PARAMETERS = ("run",)  # what every launch passes (LabSpec.blueprint)

REFUSED_AT = _("Provider {provider} refuses the template {where}, line {line}: {message}")
REFUSED = _("Provider {provider} refuses the template {where}: {message}")
NOT_CHECKED = _("The template {where} could not be checked by provider {provider}: the cloud did not "
                "answer in time. This does not stop you saving; it is checked again in a few minutes.")

_pool = ThreadPoolExecutor(max_workers=ASKING_THREADS, thread_name_prefix="labxblock-template-check")
_asking: dict[str, Future[Verdict]] = {}  # questions in flight, by cache key: each is asked once
_asking_lock = threading.Lock()


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


def verdict(provider: Provider, template: str, environment: str | None) -> Verdict:
    """``provider``'s verdict on ``template``, asked now; never raises for a cloud's trouble."""
    try:
        return Verdict(True, tuple(provider.validate(template, environment, GIVEN_PARAMETERS)))
    except ValidationUnsupported:
        return Verdict(False, supported=False)
    except ProviderError as exc:  # unreachable, auth refused…: the operator's to fix, not the author's
        log.warning("labxblock: template check on provider %s could not run: %s", provider.name, exc)
    except Exception:  # a provider's bug must not break Studio's save
        log.exception("labxblock: template check on provider %s failed", provider.name)
    return Verdict(False)


def _ask(key: str, provider: Provider, template: str, environment: str | None) -> Verdict:
    """The verdict (in a pool thread), cached before the question stops counting as in flight."""
    try:
        found = verdict(provider, template, environment)
        cache.set(key, found.as_json(), ANSWER_SECONDS if found.checked or not found.supported
                  else NOT_CHECKED_SECONDS)
        return found
    finally:
        with _asking_lock:
            _asking.pop(key, None)


def verdicts(questions: Iterable[tuple[str, str, str | None]]) -> list[Verdict]:
    """Each provider's verdict on (provider, template, environment): cached, or asked all at once.

    Waits at most ``CHECK_BUDGET_SECONDS`` in all; a question still unanswered then is "not
    checked" (cached so, unless its answer came first), and its answer is cached when it comes.
    """
    settings = get_settings()
    keys, found = [], {}
    for provider, template, environment in questions:
        key = digest(settings.providers[provider], template, environment)
        keys.append(key)
        cached = cache.get(key)
        if cached is not None:
            found[key] = Verdict.from_json(cached)
            continue
        with _asking_lock:
            if key not in _asking:
                _asking[key] = _pool.submit(_ask, key, clouds.provider(provider), template, environment)
            found[key] = _asking[key]
    futures = [f for f in found.values() if isinstance(f, Future)]
    wait(futures, timeout=CHECK_BUDGET_SECONDS)
    for key, answer in list(found.items()):
        if isinstance(answer, Future):
            if answer.done() and answer.exception() is None:
                found[key] = answer.result()
            else:
                found[key] = Verdict(False)
                cache.add(key, found[key].as_json(), NOT_CHECKED_SECONDS)  # never over an answer
    return [found[key] for key in keys]


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
    questions = list(_questions(values, read, known))
    found_all = verdicts((provider, template, env) for provider, _where, template, env in questions)
    for (provider, where, _template, _env), found in zip(questions, found_all, strict=True):
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
