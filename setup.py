"""Packaging for labxblock."""

import re
from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "labxblock/__init__.py").read_text()).group(1)

INSTALL_REQUIRES = [
    "XBlock[django]>=5.0,<7",
    "Django>=4.2,<6.0",
    "celery>=5.3,<6",
    "python-heatclient>=3.0,<6",
    "keystoneauth1>=5.0,<6",
    "python-novaclient>=18.0,<19",
    "paramiko>=3.4,<6",
    "cryptography>=42,<51",
    "PyYAML>=6.0,<7",
    "nh3>=0.2.14,<1",  # sanitises the author's HTML instructions
]

EXTRAS_REQUIRE = {
    # The terminal gateway runs as its own ASGI process.
    "gateway": [
        "uvicorn>=0.54,<0.60",  # gateway/limits.py subclasses its h11 and websockets-sansio protocols
        "websockets>=12,<18",
        "asyncssh>=2.14,<3",
        "redis>=5,<9",  # single use of tickets across gateway processes (LABXBLOCK_GATEWAY_REDIS_URL)
    ],
    "test": [
        "pytest>=8,<10",
        "pytest-django>=4.8,<5",
        "hypothesis>=6.100,<7",
        "redis>=5,<9",
        "mysqlclient>=2.2,<3",
        "build>=1.0,<2",
        "ruff>=0.6,<1",
        "selenium>=4.20,<5",
        "xblock-sdk>=0.14,<1",  # the workbench runtime for block tests
        "cssselect>=1.2,<2",  # CSS selectors over rendered views in block tests
        # What the LMS has: the worker publishes check scores through it. <3.12: its migration 0006
        # alters a column that does not exist (submissions_studentitem.uuid) on MariaDB.
        "edx-submissions>=3.7,<3.12",
        "edx-django-utils>=5,<9",  # edx-platform's plugin loader, for the settings-chain tests
        "event-tracking>=3,<5",  # edx-platform's tracker: the worker's analytics events go through it
        "tutor>=22,<23",  # the Tutor plugin's tests render a real Tutor environment
        "time-machine>=2.14,<4",  # benchmarks/lesson_month.py: the engine on an accelerated clock
    ],
}
# `labxblock demo`: the workbench, the gateway and the Redis client (the demo's broker is always Redis).
EXTRAS_REQUIRE["demo"] = [*EXTRAS_REQUIRE["gateway"], "xblock-sdk>=0.14,<1", "redis>=5,<9"]
EXTRAS_REQUIRE["test"] += EXTRAS_REQUIRE["gateway"]

setup(
    name="labxblock",
    version=VERSION,
    description="Open edX XBlock giving every learner a real lab: an OpenStack Heat stack in the courseware",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="AGPL-3.0-or-later",
    python_requires=">=3.11",
    # Data directories (templates, static, locale, the Tutor plugin's patches) are
    # namespace packages: setuptools then packs their files without a warning per directory.
    packages=find_namespace_packages(include=["labxblock", "labxblock.*"], exclude=["*.__pycache__"]),
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "labxblock-gateway = labxblock.gateway.cli:main",
            "labxblock = labxblock.cli:main",
        ],
        "xblock.v1": [
            "labxblock = labxblock.block:LabBlock",
            # The old packages' names, for courses made with them (legacy/names.py: with both installed).
            "stackamole = labxblock.legacy.block:StackamoleLabBlock",
            "hastexo = labxblock.legacy.block:HastexoLabBlock",
        ],
        "tutor.plugin.v1": ["labxblock = labxblock.tutor.plugin"],
        "lms.djangoapp": ["labxblock = labxblock.apps:LabXBlockConfig"],
        "cms.djangoapp": ["labxblock = labxblock.apps:LabXBlockConfig"],
        "labxblock.providers": [
            "openstack = labxblock.providers.openstack:OpenStackProvider",
            "local = labxblock.providers.local:LocalProvider",
        ],
    },
    classifiers=[
        "Framework :: Django",
        "Framework :: Django :: 4.2",
        "Framework :: Django :: 5.2",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
)
