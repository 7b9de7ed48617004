"""Audit: proving that the store and every number derived from it are what was appended.

`verify` recomputes the hash chain, re-hashes each usage batch's rows against its event, and rechecks the
projections; submodules are imported where used, so this package stays cheap to import.
"""
