"""The Tutor plugin ``labxblock``: ``pip install labxblock && tutor plugins enable labxblock``.

Config keys ``LABXBLOCK_*`` (defaults and per-site secrets), the settings patch
that writes ``XBLOCK_SETTINGS["labxblock"]`` for the LMS and Studio, the Celery
workers and beat, the terminal gateway with guacd, and the Caddy route. Every
patch is a file in ``patches/`` named after the Tutor patch it fills.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from tutor import exceptions, fmt, hooks

from labxblock.tutor import render

PREFIX = "LABXBLOCK_"
HERE = resources.files("labxblock.tutor")

hooks.Filters.CONFIG_DEFAULTS.add_items([(PREFIX + key, value) for key, value in render.DEFAULTS.items()])


@hooks.Filters.CONFIG_UNIQUE.add()
def _unique_values(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    # Used only while the site's config.yml lacks the key; `tutor config save` then keeps it.
    return items + [(PREFIX + key, value) for key, value in render.unique_values().items()]


def _python_literal(value: Any, name: str) -> str:
    try:
        return render.python_literal(value, name)
    except ValueError as exc:
        raise exceptions.TutorError(str(exc)) from None


hooks.Filters.ENV_TEMPLATE_FILTERS.add_item(("labxblock_python", _python_literal))
hooks.Filters.ENV_TEMPLATE_VARIABLES.add_items(
    [
        ("labxblock_celery_args", render.celery_args),
        ("labxblock_min_visibility_timeout", render.MIN_VISIBILITY_TIMEOUT),
        ("labxblock_gateway_replicas", render.gateway_replicas),
    ]
)

hooks.Filters.ENV_TEMPLATE_ROOTS.add_item(str(HERE / "templates"))
hooks.Filters.ENV_TEMPLATE_TARGETS.add_item(("labxblock/k8s", "plugins"))

for _patch in sorted((HERE / "patches").iterdir(), key=lambda p: p.name):
    if _patch.is_file() and not _patch.name.startswith("."):
        hooks.Filters.ENV_PATCHES.add_item((_patch.name, _patch.read_text(encoding="utf-8")))

hooks.Filters.IMAGES_PULL.add_item(("labxblock-guacd", "{{ LABXBLOCK_DOCKER_IMAGE_GUACD }}"))


@hooks.Actions.CONFIG_LOADED.add()
def _warn_about_config(config: dict[str, Any]) -> None:
    for problem in render.config_problems(config):
        fmt.echo_alert(f"labxblock: {problem}")
