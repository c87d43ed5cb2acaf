"""Griffe extension: render the reST bits of cnilib's docstrings as Markdown.

The docstrings are written for readers of the source and use a few Sphinx
idioms: roles such as ``:class:`cnilib.CNIError``` and paragraphs ending in
``::`` before a literal block. mkdocstrings parses the ``:param x:`` fields
itself (``docstring_style: sphinx``); this turns each role into a code span
(``~pkg.Name`` shows ``Name``) and ``text::`` into ``text:``, so neither
shows up verbatim on the site.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj|const):`(~?)([^`]+)`")
_LITERAL_INTRO = re.compile(r"(?m)^(\s*)(.*?)::\s*$")


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    if match.group(1):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _literal_intro(match: re.Match[str]) -> str:
    indent, text = match.group(1), match.group(2)
    # A lone "::" introduces the block and says nothing itself.
    return f"{indent}{text}:" if text.strip() else ""


def markdownify(text: str) -> str:
    """The docstring *text* with Sphinx roles and ``::`` intros made Markdown."""
    return _LITERAL_INTRO.sub(_literal_intro, _ROLE.sub(_role, text))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdownify(obj.docstring.value)
