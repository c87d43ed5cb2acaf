"""docs/cli.md cannot go stale: its synopses are the parser's usage lines,
and every option that ``--help`` shows is documented."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from cnilib.cli import _parser
from cnilib.conformance._cli import _parser as conformance_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """The top-level parser ("") and each command's, by command name."""
    top = _parser()
    found = {"": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    # `cnilib conformance` hands all its words to the kit's own parser: check that one.
    found["conformance"] = conformance_parser("cnilib conformance")
    return found


def _normalized(text: str) -> str:
    return " ".join(text.split())


def _code_lines() -> set[str]:
    """Every line of the doc's fenced code blocks, whitespace normalized."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    return {_normalized(line) for block in blocks for line in block.splitlines()}


@pytest.mark.parametrize("command", list(_parsers()))
def test_synopsis_is_the_usage_line(command: str) -> None:
    """Each synopsis in docs/cli.md is what `cnilib [COMMAND] --help` prints as usage."""
    parser = _parsers()[command]
    text = parser.format_usage().removeprefix("usage: ")
    # A usage written as alternatives, one per line (the kit's), is checked line by
    # line; one that argparse wrapped because it is long, as a whole.
    alternatives = text.splitlines() if parser.usage and "\n" in parser.usage else [text]

    for usage in map(_normalized, alternatives):
        assert usage in _code_lines(), f"docs/cli.md has no synopsis line {usage!r}"


@pytest.mark.parametrize("command", list(_parsers()))
def test_every_option_is_documented(command: str) -> None:
    """Every option string --help shows appears in docs/cli.md as code (`--name`)."""
    doc = DOC.read_text()
    shown = [
        option
        for action in _parsers()[command]._actions
        if action.help != argparse.SUPPRESS
        for option in action.option_strings
    ]

    missing = [option for option in shown if f"`{option}" not in doc]

    assert shown, "the parser has no options at all?"
    assert [] == missing


def test_every_command_has_a_section() -> None:
    """Each command is named in a heading of docs/cli.md."""
    headings = "\n".join(re.findall(r"^#+ .*$", DOC.read_text(), flags=re.M))

    assert [] == [name for name in _parsers() if name and f"`{name}`" not in headings]


def test_plugin_sources_are_documented() -> None:
    """Every --plugins value, the default and CNILIB_PLUGINS are in the doc."""
    from cnilib.cli import DEFAULT_PLUGIN_SOURCE, PLUGIN_SOURCES, PLUGINS_ENV

    doc = DOC.read_text()

    assert [] == [value for value in PLUGIN_SOURCES if f"| `{value}` |" not in doc]
    assert f"`{PLUGINS_ENV}`" in doc
    assert f"The default is `{DEFAULT_PLUGIN_SOURCE}`" in doc


def test_no_plugin_path_error_is_documented() -> None:
    """The refusal of in-process plugins without a plugin path is shown word for word."""
    from cnilib.cli._commands import NO_PLUGIN_PATH

    assert f"cnilib add: error: {NO_PLUGIN_PATH}\n" in DOC.read_text()
