"""Jinja2 templates for epgbridge's text artifacts (nft scripts, the HTML report, manifests)."""

from __future__ import annotations

import jinja2

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("templates", "."),
    # HTML templates are named *.html.j2: escape everything they print (names and reasons are untrusted text).
    autoescape=jinja2.select_autoescape(["html", "html.j2"]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, **context: object) -> str:
    """Render a template of this folder by file name."""
    return _ENV.get_template(name).render(**context)
