"""The auditor's and Finance's web pages on the service (`ledger serve`, under /web)."""

from ledger.web.pages import install

__all__ = ["install"]
