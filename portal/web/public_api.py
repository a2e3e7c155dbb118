"""(being built)"""

from __future__ import annotations

from portal.web.routing import Router

router = Router()
