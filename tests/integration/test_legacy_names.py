"""Who answers to ``stackamole`` and ``hastexo``: XBlock's real loader, over real installed entry points.

The old package is stood in for by a distribution written to a temporary directory on
``sys.path`` (its metadata and entry points, as stackamole-xblock 9.5.0's wheel has them);
the real package cannot be imported outside edx-platform.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from xblock.core import XBlock
from xblock.plugin import PLUGIN_CACHE, AmbiguousPluginError

from labxblock.legacy import names
from labxblock.legacy.block import HastexoLabBlock, StackamoleLabBlock


class OldStackamoleXBlock(XBlock):
    """Stands for stackamole.stackamole:StackamoleXBlock."""


def forget_classes() -> None:
    for name in ("stackamole", "hastexo"):
        PLUGIN_CACHE.pop(("xblock.v1", name), None)


@pytest.fixture
def old_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """stackamole-xblock 9.5.0 installed next to labxblock (both names, as its wheel registers them)."""
    dist = tmp_path / "stackamole_xblock-9.5.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: stackamole-xblock\nVersion: 9.5.0\n")
    target = f"{__name__}:OldStackamoleXBlock"
    (dist / "entry_points.txt").write_text(f"[xblock.v1]\nhastexo = {target}\nstackamole = {target}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_classes()
    yield
    forget_classes()


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    forget_classes()
    yield
    forget_classes()


def serving(on: bool) -> override_settings:
    return override_settings(XBLOCK_SETTINGS={
        "labxblock": {**settings.XBLOCK_SETTINGS["labxblock"], "serve_legacy_block_types": on}})


def test_alone_labxblock_answers_to_the_old_names() -> None:
    assert XBlock.load_class("stackamole") is StackamoleLabBlock
    assert XBlock.load_class("hastexo") is HastexoLabBlock


@pytest.mark.usefixtures("old_package")
def test_next_to_the_old_package_xblocks_loader_finds_two_classes_and_refuses() -> None:
    with pytest.raises(AmbiguousPluginError) as info:
        XBlock.load_class("stackamole")
    message = str(info.value)
    assert "OldStackamoleXBlock" in message and "labxblock.legacy.block.StackamoleLabBlock" in message


@pytest.mark.usefixtures("old_package")
@pytest.mark.parametrize(("on", "expected"), [(False, OldStackamoleXBlock), (True, StackamoleLabBlock)])
def test_the_select_function_lets_the_setting_choose(on: bool, expected: type) -> None:
    with serving(on):
        assert XBlock.load_class("stackamole", select=names.select) is expected
    forget_classes()
    with serving(on):
        hastexo = XBlock.load_class("hastexo", select=names.select)
    assert hastexo is (HastexoLabBlock if on else OldStackamoleXBlock)


@pytest.mark.usefixtures("old_package")
def test_the_select_function_leaves_every_other_name_to_the_platform() -> None:
    assert XBlock.load_class("labxblock", select=names.select).__name__ == "LabBlock"


def test_with_the_old_package_gone_the_select_function_still_finds_labxblock() -> None:
    with serving(False):
        assert XBlock.load_class("stackamole", select=names.select) is StackamoleLabBlock
