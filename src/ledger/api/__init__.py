"""The HTTP service (`ledger serve`): the CLI's commands and reads over FastAPI, with roles and an access log.

`ledger.api.app:create_app` builds the application; `ledger.api.deps` holds the dependencies other entrypoints
(the web pages) reuse: the authenticated `principal`, role checks, the database pool.
"""
