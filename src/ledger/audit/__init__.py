"""Audit: proving that the store and every number derived from it are what was appended.

`verify` recomputes the hash chain, checks the typed usage mirror against the events, and rechecks the
projections; submodules are imported where used, so this package stays cheap to import.
"""
