"""The gallery: the most recent results as a page with thumbnails, for people to look through.

core.py    Gallery (the last N results, their thumbnails, the static page in the data dir) and
           GallerySink (rewrites it off the worker's thread)
page.py    render(): the page's HTML, style and script (static, or live with corrections)
server.py  GalleryServer: the live page on 127.0.0.1 with a token, taking corrections from it
"""

from teddywatch.gallery.core import (PAGE_NAME, THUMB_SIZE, THUMBS_DIR, Gallery, GallerySink,
                                     Shown, default_page, recent_results)
from teddywatch.gallery.page import RELOAD_CHECK_MS, VERSION_NAME, Live, render, thumb_key

__all__ = ["PAGE_NAME", "RELOAD_CHECK_MS", "THUMB_SIZE", "THUMBS_DIR", "VERSION_NAME", "Gallery",
           "GallerySink", "Live", "Shown", "default_page", "recent_results", "render", "thumb_key"]
