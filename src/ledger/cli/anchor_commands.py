"""`ledger anchor`: sign the chain heads with a key kept outside the database, for `ledger verify --anchors`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ledger.cli.runtime import fail, settings, store
from ledger.errors import InputFileError, LedgerError
from ledger.logging import get_logger
from ledger.settings import Settings

app = typer.Typer()


@app.command()
def anchor(
    out: Optional[str] = typer.Option(None, "--out", metavar="FILE",
                                      help="append the signed anchor to FILE (default: print it for a notary)"),
    as_json: bool = typer.Option(False, "--json", help="print the signed anchor (or the refusal) as one JSON object"),
) -> None:
    """Sign the heads of the fact chain and the quarantine chain (Ed25519, key at LEDGER_ANCHOR_KEY)."""
    from ledger.audit.anchors import load_private_key, sign

    try:
        with store() as db, db.connection() as conn:
            key = load_private_key(settings().anchor_key_path, create=True)
            signed = sign(conn, key)
        line = signed.as_json()
        if out:
            try:
                with open(out, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            except OSError as error:
                raise InputFileError(out, error.strerror or str(error)) from None
    except LedgerError as error:
        fail(error)
    if as_json:
        print(line)
    elif out:
        print(f"anchored position {signed.position:,} (quarantine record {signed.quarantine_id}) in {out}")
    else:
        print(line)
    get_logger().info("store_anchored", position=signed.position, quarantine_id=signed.quarantine_id,
                      public_key=signed.public_key, out=out)


def read_anchors(path: str, settings: Settings) -> tuple[list, str]:
    """The signed anchors of a file (blank lines skipped) and the hex public key they must be signed with."""
    from ledger.audit.anchors import SignedAnchor, trusted_public_key

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputFileError(path, error.strerror or str(error)) from None
    anchors = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                anchors.append(SignedAnchor.parse(line))
            except ValueError as error:
                raise InputFileError(path, f"line {number}: {error}") from None
    return anchors, trusted_public_key(settings.anchor_public_key, settings.anchor_key_path)


