"""Test-wide fixtures: each real service lives in a plugin module of its own."""

pytest_plugins = [
    "tests.services.mariadb",
    "tests.services.redis",
    "tests.services.celery_procs",
    "tests.services.openstack_rig",
    "tests.cloudfake.fixtures",
    "tests.services.sshd",
    "tests.tutor_site",
]
