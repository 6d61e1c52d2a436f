"""The letters: one Jinja2 file per message in templates/, its body written once and rendered as plain text
and as escaped HTML."""

import re
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from services.notifications import domain
from shared.events.vocabulary import DOMAIN_LABELS

TEMPLATES = Path(__file__).parents[1] / "templates"


class Letters:
    def __init__(self) -> None:
        options: dict[str, Any] = {
            "loader": FileSystemLoader(TEMPLATES),
            "trim_blocks": True,
            "lstrip_blocks": True,
            "undefined": StrictUndefined,
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
        return " ".join(self._render(self.text, template, context, "subject").split())

    def render(self, template: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """Subject, plain text and HTML of a message."""
        text = re.sub(r"\n{3,}", "\n\n", self._render(self.text, template, context, "text")).strip() + "\n"
        return self.subject(template, context), text, self._render(self.html, template, context, "html")

    @staticmethod
    def _render(env: Environment, template: str, context: dict[str, Any], part: str) -> str:
        def link(url: str, label: str) -> str:
            if part == "html":
                return Markup('<a href="{}">{}</a>').format(url, label)
            return f"{label} : {url}"

        return env.get_template(f"{template}.jinja").render(**context, part=part, link=link)


def paragraphs(body: str) -> Markup:
    """HTML paragraphs from the body's blank-line-separated blocks (already escaped)."""
    blocks = [Markup(block.strip()) for block in str(body).split("\n\n") if block.strip()]
    return Markup("\n").join(Markup("<p>{}</p>").format(block.replace("\n", Markup("<br>\n"))) for block in blocks)
