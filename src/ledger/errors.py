"""The ledger's errors. Each carries structured fields; the CLI prints `str(error)` on one line (and, under
`--json`, the class name, exit code and fields as one JSON object); the HTTP service maps the class to a status.

    LedgerError
    ├── ConfigurationError          LEDGER_HOME not writable, bad settings (setting)
    │   └── StoreNotFoundError      a read command pointed at no store (variable, location, reason)
    ├── InvalidArgumentError        a command-line argument that is not what its option takes (option, value, reason)
    ├── UsageError                  a command line that does not parse: an unknown option, a missing argument (command)
    ├── DatabaseUnavailableError    the database cannot be reached or started (target, reason)
    ├── InputFileError              a file that does not exist or cannot be read (path, reason)
    ├── IngestStoppedError          an ingest stopped partway after committing batches (exit 4)
    ├── MigrationError              an applied migration was edited, or one failed
    ├── SequenceDrawnError          positions drawn outside the events lock: the store's order is in doubt
    ├── TokenRefusedError           a token request broke a rule; nothing was stored
    ├── ArchiveError                an archive directory that is not this store's, or unreadable
    ├── UnrepresentableNumberError  a number Parquet cannot keep exactly (column, digits)
    ├── ConsumeError                the broker refused in a way a retry will not mend
    ├── OffsetsMovedError           another group member moved a partition's offset (group, topic, partition, ...)
    ├── CommandRefusedError         a Finance command broke a rule; nothing was appended (rule, fields)
    │   ├── UnknownCustomerError, UnknownInvoiceError, InvoiceCustomerMismatchError,
    │   ├── NonPositiveAmountError, CreditExceedsInvoiceError, MissingActorError,
    │   ├── InvalidReasonError, IdempotencyKeyReusedError, MissingIdempotencyKeyError
    │   ├── MonthNotEndedError, EarlierMonthOpenError, InvalidMonthError
    │   └── InvalidCalculationNameError, UnknownPlanRuleError, CalculationRuleConflictError,
    │       UndefinedCalculationError, MissingReasonError
    └── NotFoundError               a trace or export of something that does not exist (what, key)
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    exit_code = 2


class ConfigurationError(LedgerError):
    def __init__(self, message: str, *, setting: str | None = None):
        self.setting = setting
        super().__init__(message)


class StoreNotFoundError(ConfigurationError):
    """A command that only reads was pointed at no store: it never creates one."""

    def __init__(self, variable: str, location: str, reason: str):
        self.variable, self.location, self.reason = variable, location, reason
        super().__init__(f"no ledger store at {variable}={location}: {reason}", setting=variable)


class InvalidArgumentError(LedgerError):
    """A command-line argument that is not what its option takes; nothing was read or appended."""

    def __init__(self, option: str, value: object, reason: str):
        self.option, self.value, self.reason = option, value, reason
        super().__init__(f"{option}: {value!r} {reason}")


class UsageError(LedgerError):
    """A command line that does not parse (an unknown option, a missing argument, a value of the wrong type)."""

    def __init__(self, message: str, *, command: str | None = None):
        self.command = command
        super().__init__(message + (f" (see `{command} --help`)" if command else ""))


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


class SequenceDrawnError(LedgerError):
    """Positions were drawn from the events' sequence outside the events lock: the store's order is in doubt."""


class TokenRefusedError(LedgerError):
    """A token request broke a rule (unknown role, empty name, expiry in the past); nothing was stored."""


class ArchiveError(LedgerError):
    """An archive directory that belongs to another store, or cannot be read or written."""


class UnrepresentableNumberError(LedgerError):
    def __init__(self, column: str, digits: int):
        self.column, self.digits = column, digits
        super().__init__(f"column {column!r} holds numbers of {digits} digits: more than Parquet's 38-digit "
                         "decimal keeps exactly")


class ConsumeError(LedgerError):
    """The broker refused or failed in a way that retrying will not mend (unknown topic, offset out of range)."""


class OffsetsMovedError(LedgerError):
    """Another consumer of the group moved a partition's offset: this one no longer owns it."""

    def __init__(self, group: str, topic: str, partition: int, expected: int | None, stored: int | None):
        self.group, self.topic, self.partition, self.expected, self.stored = group, topic, partition, expected, stored
        super().__init__(f"consumer group {group!r}: {topic}/{partition} is at offset {stored}, not {expected} "
                         "as this consumer believed (another member consumed it); its batch was not appended")


class NotFoundError(LedgerError):
    def __init__(self, message: str, *, what: str | None = None, key: str | None = None):
        self.what, self.key = what, key
        super().__init__(message)


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


class AmountTooLargeError(CommandRefusedError):
    rule = "amount_too_large"


class CreditExceedsInvoiceError(CommandRefusedError):
    rule = "credit_exceeds_invoice"


class MissingActorError(CommandRefusedError):
    rule = "missing_actor"


class InvalidReasonError(CommandRefusedError):
    rule = "invalid_reason"


class IdempotencyKeyReusedError(CommandRefusedError):
    rule = "idempotency_key_reused"


class MissingIdempotencyKeyError(CommandRefusedError):
    rule = "missing_idempotency_key"


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
