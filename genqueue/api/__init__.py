"""The HTTP service (`genqueue api`): a thin ASGI face over the same library functions the CLI calls.

A route parses, authorises, calls the library and renders; no business rule lives here. FastAPI is
imported only by this package, never by the CLI's start-up path.
"""
