"""The dashboard (``signalcast web``): read-only pages served by one process.

Server-rendered HTML with charts drawn as inline SVG on the server: no script, no asset fetched
from anywhere at run time (the pages' Content-Security-Policy forbids it). The overview renders
:func:`signalcast.ops.status.collect_status`, the same dictionary the CLI and the bot render;
every other page reads the database through the bounded queries of :mod:`.queries`.

- :mod:`.svg`: the charts (price with served probabilities and alerts, reliability diagram,
  running Brier score of the champion and its challengers);
- :mod:`.queries`: what each page reads, each query with a LIMIT;
- :mod:`.pages`: the HTML of each page;
- :mod:`.server`: the HTTP server (stdlib), routing and the access token.
"""
