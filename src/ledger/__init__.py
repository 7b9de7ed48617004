"""ledger: a finance-grade, event-sourced usage-billing ledger.

Every usage event, identity link, attribute change, price, invoice, credit and period
close is a fact appended once to an immutable store; every reported number is a
projection of those facts, rebuildable from position 0 and traceable to its facts.
"""

__version__ = "0.1.0"
