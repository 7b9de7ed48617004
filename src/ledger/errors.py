"""The ledger's errors. Each carries structured fields; the CLI prints `str(error)` on one line.

    LedgerError
    ├── ConfigurationError          LEDGER_HOME not writable, bad settings
    ├── DatabaseUnavailableError    the database cannot be reached or started
    ├── InputFileError              a file that does not exist or cannot be read
    ├── IngestStoppedError          an ingest stopped partway after committing batches (exit 4)
    ├── MigrationError              an applied migration was edited, or one failed
    ├── CommandRefusedError         a Finance command broke a rule; nothing was appended
    │   ├── UnknownCustomerError, UnknownInvoiceError, InvoiceCustomerMismatchError,
    │   ├── NonPositiveAmountError, CreditExceedsInvoiceError, MissingActorError,
    │   ├── InvalidReasonError, IdempotencyKeyReusedError
    │   ├── MonthNotEndedError, EarlierMonthOpenError, InvalidMonthError
    │   └── InvalidCalculationNameError, UnknownPlanRuleError, CalculationRuleConflictError,
    │       UndefinedCalculationError, MissingReasonError
    └── NotFoundError               a trace or export of something that does not exist
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    exit_code = 2


class ConfigurationError(LedgerError):
    pass


class DatabaseUnavailableError(LedgerError):
    def __init__(self, target: str, reason: str):
        self.target, self.reason = target, reason
        super().__init__(f"cannot reach the database at {target}: {reason}")


class InputFileError(LedgerError):
    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class IngestStoppedError(LedgerError):
    """An ingest stopped partway; the batches it committed stand and a re-run of the file appends the rest."""

    exit_code = 4

    def __init__(self, message: str, *, appended: int, first_position: int | None, last_position: int | None,
                 last_line: int | None):
        self.appended, self.first_position, self.last_position = appended, first_position, last_position
        self.last_line = last_line
        super().__init__(message)


class MigrationError(LedgerError):
    pass


class NotFoundError(LedgerError):
    pass


class CommandRefusedError(LedgerError):
    """A command broke a business rule; nothing was appended."""

    rule = "refused"

    def __init__(self, message: str, **fields: object):
        self.fields = fields
        super().__init__(f"refused ({self.rule}): {message}")


class UnknownCustomerError(CommandRefusedError):
    rule = "unknown_customer"


class UnknownInvoiceError(CommandRefusedError):
    rule = "unknown_invoice"


class InvoiceCustomerMismatchError(CommandRefusedError):
    rule = "invoice_customer_mismatch"


class NonPositiveAmountError(CommandRefusedError):
    rule = "amount_not_positive"


class CreditExceedsInvoiceError(CommandRefusedError):
    rule = "credit_exceeds_invoice"


class MissingActorError(CommandRefusedError):
    rule = "missing_actor"


class InvalidReasonError(CommandRefusedError):
    rule = "invalid_reason"


class IdempotencyKeyReusedError(CommandRefusedError):
    rule = "idempotency_key_reused"


class MonthNotEndedError(CommandRefusedError):
    rule = "month_not_ended"


class EarlierMonthOpenError(CommandRefusedError):
    rule = "earlier_month_open"


class InvalidMonthError(CommandRefusedError):
    rule = "invalid_month"


class InvalidCalculationNameError(CommandRefusedError):
    rule = "invalid_calculation_name"


class UnknownPlanRuleError(CommandRefusedError):
    rule = "unknown_plan_rule"


class CalculationRuleConflictError(CommandRefusedError):
    rule = "calculation_rule_conflict"


class UndefinedCalculationError(CommandRefusedError):
    rule = "undefined_calculation"


class MissingReasonError(CommandRefusedError):
    rule = "missing_reason"
