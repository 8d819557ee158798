"""Like edx-platform's ``lms/envs/production.py``: the YAML named by ``LMS_CFG``, then the plugins'
production settings."""

import os

import yaml
from edx_django_utils.plugins import add_plugins

from .common import *  # noqa: F403
from .common import LMS, PRODUCTION

with open(os.environ["LMS_CFG"], encoding="utf-8") as f:
    _YAML_TOKENS = yaml.safe_load(f) or {}
vars().update(_YAML_TOKENS)  # edx-platform splats the YAML over the defaults (XBLOCK_SETTINGS included)

BROKER_URL = os.environ.get("EDX_SITE_BROKER_URL", "memory://")
BROKER_TRANSPORT_OPTIONS = {
    "fanout_patterns": True,
    "fanout_prefix": True,
    **_YAML_TOKENS.get("CELERY_BROKER_TRANSPORT_OPTIONS", {}),
}

add_plugins(__name__, LMS, PRODUCTION)

EXPLICIT_QUEUES: dict = {}  # edx-platform sets its routing after the plugins, as here
ALTERNATE_ENV_TASKS: dict = {}
