"""A settings chain shaped like edx-platform's LMS: ``common`` → ``production`` (YAML) → an operator's patch.

edx-platform's ``lms/envs/common.py`` installs the plugin apps and calls
``add_plugins(..., COMMON)``; ``lms/envs/production.py`` does ``from .common import *``,
splats the YAML file named by ``LMS_CFG`` into its namespace, merges the broker's
transport options and calls ``add_plugins(..., PRODUCTION)``; Tutor's
``openedx-common-settings`` patch comes after ``from lms.envs.production import *``
(``tutor.py`` here). The plugin functions are edx-django-utils' own; the project and
settings types are edx-platform's constants (``ProjectType.LMS``, ``SettingsType.*``).
"""
