"""``labxblock check``: are the settings valid, and can each provider be worked with right now?

Each provider authenticates, lists this site's stacks and reports its quota where it
can (``Provider.check``); the verdict per provider is ok or FAIL. Nothing is changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from labxblock import clouds
from labxblock.conf import LabSettingsError, get_settings, reset_settings_cache
from labxblock.labs import drain, jobs
from labxblock.providers.base import CheckReport, ProviderError


@dataclass(frozen=True)
class Verdict:
    """One line of the check's answer, with its details."""

    subject: str  # "settings" or "provider <name> (<type>)"
    ok: bool
    details: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        return [f"{self.subject}: {'ok' if self.ok else 'FAIL'}", *(f"  {d}" for d in self.details)]


def run() -> list[Verdict]:
    """The settings' verdict, then one per configured provider (none if the settings are wrong)."""
    reset_settings_cache()  # read them as they are now, as a freshly started worker would
    try:
        settings = get_settings()
    except LabSettingsError as exc:
        return [Verdict("settings", False, (str(exc),))]
    verdicts = [Verdict("settings", True, (f"install id {settings.install_id}, "
                                            f"{len(settings.providers)} provider(s)",))]
    flags = drain.flags()
    tag = jobs.install_tag()
    for name, conf in settings.providers.items():
        try:
            report = clouds.provider(name).check(tag)
        except (ProviderError, OSError) as exc:  # a provider's own check should not raise; say so if it does
            report = CheckReport(False, (f"check: {exc}",))
        details = list(report.details)
        flag = flags.get(name)
        if flag is not None and flag.draining:
            moves = ", labs move at their next launch" if flag.moves else ""
            details.append(f"draining since {flag.since:%Y-%m-%d %H:%M} UTC{moves}")
        verdicts.append(Verdict(f"provider {name} ({conf.type})", report.ok, tuple(details)))
    return verdicts
