"""The ledger's facts and rules: pure Python, no I/O, no clock, no random ids."""
