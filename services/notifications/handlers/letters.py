"""The letters: one Jinja2 file per message in templates/, its body written once and rendered as plain text
and as escaped HTML."""

import re
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from services.notifications import domain
from shared.events.vocabulary import DOMAIN_LABELS

TEMPLATES = Path(__file__).parents[1] / "templates"
BLANK_LINES = re.compile(r"\n{3,}")


class Letters:
    def __init__(self) -> None:
        options: dict[str, Any] = {
            "loader": FileSystemLoader(TEMPLATES),
            "trim_blocks": True,
            "lstrip_blocks": True,
            "undefined": StrictUndefined,
            "auto_reload": False,  # the letters do not change under a running process: no stat() per render
        }
        self.text, self.html = Environment(autoescape=False, **options), Environment(autoescape=True, **options)
        for env in (self.text, self.html):
            env.filters["fr_date"] = lambda value: date.fromisoformat(str(value)[:10]).strftime("%d/%m/%Y")
            env.filters["domain_label"] = lambda value: DOMAIN_LABELS.get(value, value)
            env.filters["reason_label"] = domain.reason_label
            env.filters["organization_kind_label"] = domain.organization_kind_label
            env.filters["imbalance_label"] = domain.IMBALANCE_KINDS.get
        self.html.filters["paragraphs"] = paragraphs

    def subject(self, template: str, context: dict[str, Any]) -> str:
        # its block alone: the whole letter rendered for its subject costs three times as much
        letter = self.text.get_template(f"{template}.jinja")
        rendered = "".join(
            letter.blocks["subject"](letter.new_context({**context, "part": "subject", "link": _text_link}))
        )
        return " ".join(rendered.split())

    def render(self, template: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """Subject, plain text and HTML of a message."""
        text = BLANK_LINES.sub("\n\n", self._render(self.text, template, context, "text")).strip() + "\n"
        return self.subject(template, context), text, self._render(self.html, template, context, "html")

    @staticmethod
    def _render(env: Environment, template: str, context: dict[str, Any], part: str) -> str:
        link = _html_link if part == "html" else _text_link
        return env.get_template(f"{template}.jinja").render(**context, part=part, link=link)


def _text_link(url: str, label: str) -> str:
    return f"{label} : {url}"


def _html_link(url: str, label: str) -> Markup:
    # escape() and an f-string: what Markup.format does, without string.Formatter's machinery
    return Markup(f'<a href="{escape(url)}">{escape(label)}</a>')


def paragraphs(body: str) -> Markup:
    """HTML paragraphs from the body's blank-line-separated blocks (already escaped)."""
    blocks = [block.strip() for block in str(body).split("\n\n") if block.strip()]
    return Markup("\n".join(f"<p>{block.replace(chr(10), '<br>' + chr(10))}</p>" for block in blocks))
