"""The read-only status page (``remotetool serve``): runs, one run, sites, and an
IVOA UWS 1.1 view under ``/uws/``.

A Starlette application served by uvicorn. Every figure comes from the same library
calls the command line uses (:mod:`remotebridge.runs`, :mod:`remotebridge.runview`,
:mod:`remotebridge.control`); this package only renders them. See docs/web.md.
"""
