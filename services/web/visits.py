"""What every page of the website works with: its templates, and the visit (session, public API, answer)."""

from pathlib import Path
from typing import Annotated

from fastapi import Depends

from shared.web.pages import Pages, Visit

pages = Pages(Path(__file__).parent / "templates")
VisitOf = Annotated[Visit, Depends(pages.visit)]
HOME_OF_ROLE = {
    "volunteer": "/mon-espace",
    "manager": "/espace-structure",
    "referent": "/moderation",
    "admin": "/moderation",
}
