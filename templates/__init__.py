"""Jinja2 templates for epgbridge's text artifacts (nft scripts, the HTML report, manifests)."""

from __future__ import annotations

import jinja2

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("templates", "."),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, **context: object) -> str:
    """Render a template of this folder by file name."""
    return _ENV.get_template(name).render(**context)
