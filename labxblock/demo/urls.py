"""The workbench's URLs; :class:`labxblock.demo.scenario.ScenarioMiddleware` adds the demo's scenario."""

from workbench.urls import urlpatterns  # noqa: F401 (Django reads it from here)
