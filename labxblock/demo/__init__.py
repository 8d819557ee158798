"""``labxblock demo``: the xblock-sdk workbench with a local lab, in one command.

Everything runs on 127.0.0.1 from a demo directory: SQLite, a Celery worker and
beat, the terminal gateway in console mode, and the ``local`` provider. For
trying labxblock out and for developing it, never for learners (see
docs/quickstart.md). Needs the ``demo`` extra: ``pip install -e ".[demo]"``.
"""
