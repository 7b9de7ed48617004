"""A PostgreSQL query as an Arrow table with typed columns, the work done in C++ on both sides.

PostgreSQL writes the rows as CSV (`COPY ... TO STDOUT`) and pyarrow parses them with the column types read
from the query's own result description: bigint as int64, integer as int32, timestamptz as timestamp[us, UTC],
date as date32, numeric as decimal128 (its scale the largest in the data), text, json and uuid as strings.
Measured against fetching rows through psycopg: the Python objects per value are what costs, and here there
are none.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pcsv
import psycopg
from psycopg import sql

from ledger.errors import UnrepresentableNumberError

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
_BY_OID = {16: pa.bool_(), 20: pa.int64(), 21: pa.int16(), 23: pa.int32(), 700: pa.float32(), 701: pa.float64(),
           1082: pa.date32(), 1114: pa.timestamp("us"), 1184: UTC_TIMESTAMP}
NUMERIC, BYTEA = 1700, 17


def query_table(conn: psycopg.Connection, query: sql.Composable, params: tuple = ()) -> pa.Table:
    """The rows of QUERY (a SELECT) as an Arrow table, columns typed from the query's result types."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM ({}) q LIMIT 0").format(query), params)
        described = [(c.name, c.type_code) for c in cur.description]
    outer, fields, utc = [], [], set()
    for name, oid in described:
        column = sql.Identifier("q", name)
        if oid == 1184:
            outer.append(sql.SQL("{} AT TIME ZONE 'UTC'").format(column))  # parsed as UTC wall time below
            fields.append(pa.field(name, pa.timestamp("us")))
            utc.add(name)
        elif oid in _BY_OID:
            outer.append(column)
            fields.append(pa.field(name, _BY_OID[oid]))
        elif oid == NUMERIC:
            outer.append(column)
            fields.append(pa.field(name, _decimal_type(conn, query, params, name)))
        elif oid == BYTEA:
            outer.append(sql.SQL("encode({}, 'hex')").format(column))
            fields.append(pa.field(name, pa.string()))
        else:
            outer.append(sql.SQL("{}::text").format(column))
            fields.append(pa.field(name, pa.string()))
    schema = pa.schema(fields)
    final = pa.schema([pa.field(f.name, UTC_TIMESTAMP) if f.name in utc else f for f in fields])
    data = bytearray()
    copy_sql = sql.SQL("COPY (SELECT {} FROM ({}) q) TO STDOUT (FORMAT csv)").format(
        sql.SQL(", ").join(outer), query)
    with conn.cursor() as cur, cur.copy(copy_sql, params) as copy:
        for block in copy:
            data += block
    if not data:
        return final.empty_table()
    table = pcsv.read_csv(
        pa.py_buffer(bytes(data)),
        read_options=pcsv.ReadOptions(column_names=schema.names, block_size=16 << 20),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types=schema, strings_can_be_null=True,
                                            quoted_strings_can_be_null=False))
    return table.cast(final)


def _decimal_type(conn: psycopg.Connection, query: sql.Composable, params: tuple, name: str) -> pa.DataType:
    """decimal128 wide enough for every value of the column exactly."""
    column = sql.Identifier(name)
    scale, whole = conn.execute(sql.SQL(
        "SELECT coalesce(max(scale({c})), 0), coalesce(max(length(trunc(abs({c}))::text)), 1) FROM ({}) q"
    ).format(query, c=column), params).fetchone()
    if whole + scale > 38:
        raise UnrepresentableNumberError(name, whole + scale)
    return pa.decimal128(38, int(scale))
