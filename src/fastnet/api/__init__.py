"""The control layer's API: an HTTP/1.1 server on a unix socket (``http``), its routes
(``routes``: fastnet's own under /v1, gvproxy's under /services and /stats, Prometheus text at
/metrics), slirp4netns's JSON API socket (``slirp``), and the client the CLI uses (``client``).
"""
