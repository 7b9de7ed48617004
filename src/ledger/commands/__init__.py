"""Command handlers: each loads what it needs, decides with a domain rule, and appends."""
