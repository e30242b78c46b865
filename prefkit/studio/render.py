"""Untrusted text to HTML: escaped plain text, or Markdown rendered then sanitised.

Markdown goes through markdown-it-py with raw HTML off (HTML in model output shows as text),
then through nh3 (the Ammonia sanitiser; bleach is deprecated) with a small allowlist of tags,
no attributes but ``href`` on links, and only http, https and mailto URLs, so ``<script>``,
event handlers and ``javascript:`` links never reach the page. Templates autoescape everything
else (``Jinja2Templates``), and the pages' Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

from markupsafe import Markup, escape

ALLOWED_TAGS = {"p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "a",
                "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "del"}
ALLOWED_ATTRIBUTES = {"a": {"href"}}
URL_SCHEMES = {"http", "https", "mailto"}


def _markdown():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


_MD = None


def sanitise_html(html: str) -> str:
    import nh3

    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=URL_SCHEMES,
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


def render(text: str | None, mode: str = "markdown") -> Markup:
    """Safe HTML for ``text``: ``markdown`` (rendered, sanitised) or ``text`` (escaped, kept as is)."""
    global _MD
    text = text or ""
    if mode == "text":
        return Markup('<div class="plain">') + escape(text) + Markup("</div>")
    if _MD is None:
        _MD = _markdown()
    return Markup('<div class="md">' + sanitise_html(_MD.render(text)) + "</div>")
