"""The monitor page and metrics that `siip-watcher start` serves (``[web]``).

``server.py`` runs waitress in the service's process; ``routes.py`` is the WSGI application
(werkzeug); ``auth.py`` the token, the session cookie and the CSRF token; ``view.py`` reads
what the page shows; ``page.py`` and ``chart.py`` turn it into HTML and SVG (pure); ``texts.py``
holds the page's words in Spanish and English; ``metrics.py`` the Prometheus collector.
"""
