"""The notifier: prints each new diagnosis version as a page, or posts it to a webhook URL.

`Notifier.handle` is the seam: it takes one diagnosis and raises when it could
not deliver it. Slack delivery plugs in there.
"""

from __future__ import annotations

import sys
from typing import TextIO

import aiohttp

from pipeline.diagnose import Diagnosis
from pipeline.render import render_page
from pipeline.runbooks import Catalog

POST_TIMEOUT = 10.0


class Notifier:
    """Delivers one diagnosis version: the page text to a stream, or a JSON post to a URL."""

    def __init__(self, catalog: Catalog, url: str | None = None, out: TextIO = sys.stdout):
        self.catalog = catalog
        self.url = url
        self.out = out

    async def handle(self, diagnosis: Diagnosis) -> None:
        page = render_page(diagnosis, self.catalog)
        if self.url is None:
            print(page + "\n", file=self.out, flush=True)
            return
        payload = {"incident_id": diagnosis.incident_id, "version": diagnosis.version, "text": page,
                   "diagnosis": diagnosis.model_dump(mode="json")}
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(self.url, json=payload) as response:
                if response.status >= 300:
                    raise RuntimeError(f"{self.url} answered {response.status}")
