#!/usr/bin/env python3
"""Quix Streams peer of credstream's processor for one CSV category (card.accounts).

Consumes file-arrival messages (JSON value {"path", "client_id", "raw_key"}, key = client id)
and, per message, does what credstream's processor does to a file of the category:

1. reads the file's bytes and hashes them (SHA-256, hex);
2. dedupes on that hash in Quix's own state (RocksDB, with its changelog topic): bytes this
   client sent before produce nothing;
3. checks the header against the layout (topologies/card_accounts.toml), validates and
   converts every data row as the layout says (required fields, integers, dates, decimals
   with at most `scale` places, code lists and minimums), tokenises the card number
   (HMAC-SHA-256, lower-case hex, as src/tokenise.rs), and reconciles the trailer's control
   totals. Like credstream, a file with a trailer is validated completely first (pass 1)
   and its records are only produced in a second pass if it reconciles; a header drift or a
   trailer mismatch holds the whole file (printed, nothing produced);
4. produces each valid row as an Avro record of avro/card_accounts.avsc through Quix's
   AvroSerializer and the schema registry (subject `<output topic>-value`), key
   `<sha256>:<record_index>`, fanned out with `apply(..., expand=True)` + `to_topic`.

At exit it prints one JSON line (see `report`). See README.md in this directory.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import decimal
import hashlib
import hmac
import json
import os
import re
import resource
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_LAYOUT = REPO / "topologies" / "card_accounts.toml"
DEFAULT_SCHEMA = REPO / "avro" / "card_accounts.avsc"

# Python's csv module refuses fields over 128 KiB by default; the csv crate has no limit.
csv.field_size_limit(1 << 30)

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")


# --------------------------------------------------------------------------------------
# The layout: a small reader of the category TOML (the subset CSV categories use).
# --------------------------------------------------------------------------------------


class BadRecord(Exception):
    """A record that cannot go out: (drift class, field, reason)."""

    def __init__(self, cls: str, field: Optional[str], reason: str):
        super().__init__(reason)
        self.cls = cls
        self.field = field
        self.reason = reason


def _decimal_re(scale: int) -> re.Pattern:
    # What credstream's `parse_decimal` accepts: [+-]digits[.digits], at most `scale`
    # fraction digits, at least one digit somewhere, at most 30 integer digits.
    if scale == 0:
        return re.compile(r"[+-]?[0-9]{1,30}\.?\Z")
    return re.compile(
        r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,%d})?|\.[0-9]{1,%d})\Z" % (scale, scale)
    )


class Field:
    """One [[field]] of the layout, with its converter from cell text to Avro value."""

    def __init__(self, spec: dict):
        self.name: str = spec["name"]
        self.column: str = spec.get("column", self.name)
        self.type: str = spec["type"]
        self.required: bool = bool(spec.get("required", False))
        self.scale: Optional[int] = spec.get("scale")
        self.format: Optional[str] = spec.get("format")
        allowed = spec.get("allowed")
        self.min = spec.get("min")
        self.max = spec.get("max")
        if self.type not in ("string", "int", "long", "decimal", "date", "pan"):
            raise SystemExit(f"layout field {self.name}: type {self.type!r} is not supported by the peer")
        self.allowed_text = set(allowed) if allowed and self.type == "string" else None
        self.allowed_numbers = (
            {int(a) for a in allowed} if allowed and self.type in ("int", "long") else None
        )
        if self.type == "decimal":
            self.min = decimal.Decimal(str(self.min)) if self.min is not None else None
            self.max = decimal.Decimal(str(self.max)) if self.max is not None else None
            self.decimal_re = _decimal_re(self.scale or 0)
        self.convert: Callable[[str], Any] = getattr(self, "_conv_" + self.type)

    # Each converter takes the raw cell text and returns the Avro value, or raises
    # BadRecord. Empty (after trimming) is null, or MISSING_VALUE when required.

    def _missing(self):
        if self.required:
            raise BadRecord("MISSING_VALUE", self.name, f"required column {self.column} is empty")
        return None

    def _domain(self, value):
        if self.allowed_numbers is not None and value not in self.allowed_numbers:
            raise BadRecord("OUT_OF_DOMAIN", self.name, f"{self.column}: {value} is not allowed")
        if self.min is not None and value < self.min:
            raise BadRecord("OUT_OF_DOMAIN", self.name, f"{self.column}: {value} is below {self.min}")
        if self.max is not None and value > self.max:
            raise BadRecord("OUT_OF_DOMAIN", self.name, f"{self.column}: {value} is above {self.max}")
        return value

    def _conv_string(self, text: str):
        if not text.strip():
            return self._missing()
        if self.allowed_text is not None and text.strip() not in self.allowed_text:
            raise BadRecord("OUT_OF_DOMAIN", self.name, f"{self.column}: {text!r} is not allowed")
        return text  # credstream keeps string values as written (untrimmed)

    def _conv_int(self, text: str, lo=I32_MIN, hi=I32_MAX):
        s = text.strip()
        if not s:
            return self._missing()
        if not _INT_RE.match(s):
            raise BadRecord("TYPE_MISMATCH", self.name, f"{self.column}: {s!r} is not an integer")
        v = int(s)
        if v < lo or v > hi:
            raise BadRecord("TYPE_MISMATCH", self.name, f"{self.column}: {s!r} is out of range")
        if self.allowed_numbers is None and self.min is None and self.max is None:
            return v
        return self._domain(v)

    def _conv_long(self, text: str):
        return self._conv_int(text, I64_MIN, I64_MAX)

    def _conv_decimal(self, text: str):
        s = text.strip()
        if not s:
            return self._missing()
        if not self.decimal_re.match(s):
            raise BadRecord(
                "TYPE_MISMATCH",
                self.name,
                f"{self.column}: {s!r} is not a decimal with at most {self.scale} fraction digits",
            )
        v = decimal.Decimal(s)
        if self.min is None and self.max is None:
            return v
        return self._domain(v)

    def _conv_date(self, text: str):
        s = text.strip()
        if not s:
            return self._missing()
        try:
            if self.format == "%Y-%m-%d":
                # Fast path for the ISO layout; fromisoformat alone would accept other
                # ISO forms (20261031, 2026-W44-6).
                if len(s) != 10 or s[4] != "-" or s[7] != "-":
                    raise ValueError
                return datetime.date.fromisoformat(s)
            return datetime.datetime.strptime(s, self.format).date()
        except ValueError:
            raise BadRecord(
                "TYPE_MISMATCH", self.name, f"{self.column}: {s!r} is not a date formatted {self.format}"
            ) from None

    def _conv_pan(self, text: str):
        # As FieldType::Pan / Tokeniser::tokenise: 12 to 19 digits, spaces and dashes
        # between are dropped. Tokenised later (by the Layout, which holds the key).
        s = text.strip()
        if not s:
            return self._missing()
        digits = s.replace(" ", "").replace("-", "")
        if not (12 <= len(digits) <= 19 and digits.isascii() and digits.isdigit()):
            raise BadRecord("TYPE_MISMATCH", self.name, f"{self.column}: not a card number (12 to 19 digits)")
        return digits


class Layout:
    def __init__(self, toml_path: Path, schema: dict, token_key: bytes):
        spec = tomllib.loads(toml_path.read_text())
        cat = spec["category"]
        self.layout_id = f"{cat['name']}@{cat.get('layout_version', 1)}"
        fmt = spec.get("format", {})
        if fmt.get("kind") != "csv":
            raise SystemExit(f"{toml_path}: the peer reads CSV layouts only")
        self.delimiter = fmt.get("delimiter", ",")
        self.fields = [Field(f) for f in spec["field"]]
        self.columns = [f.column for f in self.fields]
        trailer = spec.get("trailer")
        self.trailer = None
        if trailer:
            sums = []
            for s in trailer.get("sum", []):
                idx = next(i for i, f in enumerate(self.fields) if f.name == s["field"])
                sums.append((s["column"], idx, self.fields[idx]))
            self.trailer = {
                "marker": trailer["marker"],
                "count_column": trailer["count_column"],
                "required": bool(trailer.get("required", False)),
                "sums": sums,
            }
        self.token_key = token_key
        # The Avro record's field names in schema order, and the check that the layout
        # and the schema agree (credstream checks its contracts at start-up too).
        names = []
        for f in self.fields:
            if f.type == "pan":
                names += [f.name + "_token", f.name + "_display"]
            else:
                names.append(f.name)
        schema_names = [f["name"] for f in schema["fields"]]
        if set(names) | {"provenance"} != set(schema_names):
            raise SystemExit(
                f"layout and schema disagree: layout {sorted(names)} vs schema {sorted(schema_names)}"
            )

    def marker_in(self, data: bytes) -> bool:
        """Category::validates_first for a CSV layout with `bad_records = "record"`."""
        t = self.trailer
        if t is None:
            return False
        return t["required"] or '"' in t["marker"] or t["marker"].encode() in data

    def convert(self, cells: list[str]) -> dict:
        """The Avro record of one data row (without provenance), or BadRecord."""
        out: dict[str, Any] = {}
        key = self.token_key
        for f, text in zip(self.fields, cells):
            v = f.convert(text)
            if f.type == "pan":
                if v is None:
                    out[f.name + "_token"] = None
                    out[f.name + "_display"] = None
                else:
                    out[f.name + "_token"] = hmac.digest(key, v.encode("ascii"), "sha256").hex()
                    out[f.name + "_display"] = v[:6] + "*" * (len(v) - 10) + v[-4:]
            else:
                out[f.name] = v
        return out


# --------------------------------------------------------------------------------------
# Reading a file: rows with their line and byte offset.
# --------------------------------------------------------------------------------------


class Held(Exception):
    """The whole file is held: (drift class, reason)."""

    def __init__(self, cls: str, reason: str):
        super().__init__(f"{cls}: {reason}")
        self.cls = cls
        self.reason = reason


def rows_with_positions(data: bytes, delimiter: str) -> Iterator[tuple[list[str], int, int]]:
    """(cells, 1-based line, byte offset of the row's first byte) for every CSV row,
    header included. Offsets are counted on the bytes, so they match credstream's."""
    pos = [0, 0]  # byte offset and line count of the next line not yet handed to csv

    def lines():
        start = 0
        n = len(data)
        find = data.find
        while start < n:
            end = find(b"\n", start)
            end = n if end < 0 else end + 1
            chunk = data[start:end]
            pos[0] = end
            pos[1] += 1
            start = end
            yield chunk.decode("utf-8")

    reader = csv.reader(lines(), delimiter=delimiter, strict=False)
    while True:
        offset, line = pos[0], pos[1] + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        yield cells, line, offset


def check_header(layout: Layout, cells: list[str]) -> None:
    cols = [c.strip() for c in cells]
    if cols and cols[0].startswith("\ufeff"):
        cols[0] = cols[0][1:].strip()
    if cols != layout.columns:
        missing = [c for c in layout.columns if c not in cols]
        extra = [c for c in cols if c not in layout.columns]
        if len(set(cols)) != len(cols):
            cls = "MALFORMED"
        elif not missing and not extra:
            cls = "REORDERED_COLUMNS"
        elif not missing:
            cls = "EXTRA_COLUMN"
        elif not extra:
            cls = "MISSING_COLUMN"
        else:
            cls = "RENAMED_COLUMN"
        raise Held(cls, f"header does not match the layout: missing {missing}, extra {extra}")


def read_header(layout: Layout, rows) -> list:
    """Reads the header row from `rows` and checks it against the layout (Held if not)."""
    try:
        header, _, _ = next(rows)
    except StopIteration:
        raise Held("MALFORMED", "the file is empty; a header row was expected") from None
    except UnicodeDecodeError as e:
        raise Held("ENCODING", f"header is not UTF-8: {e}") from None
    check_header(layout, header)
    return header


def check_header_only(layout: Layout, data: bytes) -> None:
    read_header(layout, rows_with_positions(data, layout.delimiter))


def parse_file(layout: Layout, data: bytes, on_bad) -> Iterator[tuple[dict, int, int, int]]:
    """Parses `data` lazily: yields (record, index, line, byte offset) for every good row and
    calls on_bad(BadRecord, index, line) for every bad one; reconciles the trailer at the
    end. Returns (StopIteration.value) the summary; raises Held for a header drift (before
    any row) or a trailer mismatch (after the last row)."""
    rows = rows_with_positions(data, layout.delimiter)
    header = read_header(layout, rows)
    width = len(header)
    t = layout.trailer
    marker = t["marker"] if t else None
    sums = [decimal.Decimal(0) for _ in (t["sums"] if t else ())]
    left_out = [0 for _ in sums]
    trailer_row = None
    trailer_line = 0
    second_trailer = None
    rows_after = 0
    records = 0
    bad = 0
    convert = layout.convert
    try:
        for cells, line, offset in rows:
            if not cells:
                continue  # a blank line is no record (the csv crate skips them too)
            if marker is not None:
                if cells[0].strip() == marker:
                    if trailer_row is None:
                        trailer_row, trailer_line = cells, line
                    elif second_trailer is None:
                        second_trailer = line
                    continue
                if trailer_row is not None:
                    if all(not c.strip() for c in cells):
                        continue
                    rows_after += 1
            index = records
            records += 1
            rec = None
            try:
                if len(cells) != width:
                    raise BadRecord(
                        "WRONG_FIELD_COUNT", None, f"record has {len(cells)} fields, the header has {width}"
                    )
                rec = convert(cells)
            except BadRecord as e:
                bad += 1
                on_bad(e, index, line)
            if t:
                for i, (_, fidx, f) in enumerate(t["sums"]):
                    if rec is not None:
                        v = rec[f.name]
                    elif len(cells) == width:
                        try:
                            v = f.convert(cells[fidx])
                        except BadRecord:
                            left_out[i] += 1
                            continue
                    else:
                        left_out[i] += 1
                        continue
                    if v is not None:
                        sums[i] += v
            if rec is not None:
                yield rec, index, line, offset
    except UnicodeDecodeError as e:
        raise Held("ENCODING", f"the file is not UTF-8: {e}") from None
    except csv.Error as e:
        raise Held("MALFORMED", f"unreadable record: {e}") from None

    summary = {"records": records, "bad": bad, "trailer": None}
    if t is None:
        return summary
    if trailer_row is None:
        if t["required"]:
            raise Held("TRAILER_MISMATCH", f"no trailer row (first cell {marker})")
        return summary
    if second_trailer is not None:
        raise Held("TRAILER_MISMATCH", f"trailer rows at lines {trailer_line} and {second_trailer}")
    if rows_after:
        raise Held("TRAILER_MISMATCH", f"{rows_after} data rows follow the trailer at line {trailer_line}")
    try:
        stated_count = int(trailer_row[t["count_column"]].strip())
    except (IndexError, ValueError):
        raise Held("TRAILER_MISMATCH", f"the trailer at line {trailer_line} has no readable count") from None
    if stated_count != records:
        raise Held(
            "TRAILER_MISMATCH",
            f"the trailer at line {trailer_line} counts {stated_count} data records, the file has {records}",
        )
    for i, (column, _, f) in enumerate(t["sums"]):
        try:
            text = trailer_row[column].strip()
            if not f.decimal_re.match(text):
                raise ValueError
            stated = decimal.Decimal(text)
        except (IndexError, ValueError):
            raise Held("TRAILER_MISMATCH", f"no readable total of {f.name} in cell {column}") from None
        if stated != sums[i]:
            note = f"; {left_out[i]} values did not parse" if left_out[i] else ""
            raise Held(
                "TRAILER_MISMATCH",
                f"the trailer at line {trailer_line} totals {f.name} as {text}, the records sum to {sums[i]}{note}",
            )
    summary["trailer"] = {"count": stated_count, "sums": {f.name: str(s) for (_, _, f), s in zip(t["sums"], sums)}}
    return summary


# --------------------------------------------------------------------------------------
# The Quix Streams application.
# --------------------------------------------------------------------------------------


class Stats:
    def __init__(self):
        self.files = 0
        self.files_duplicate = 0
        self.files_held = 0
        self.records_out = 0
        self.records_bad = 0
        self.t_first: Optional[float] = None
        self.ru_first = None
        self.t_flushed: Optional[float] = None
        self.ru_flushed = None
        self.processed_messages = 0


def log(msg: str) -> None:
    print(f"quix_peer: {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", required=True, help="bootstrap servers, host:port")
    p.add_argument("--registry", required=True, help="schema registry URL, http://host:port")
    p.add_argument("--input-topic", required=True)
    p.add_argument("--output-topic", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--consumer-group", required=True)
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--token-key-hex", help="tokenisation key, hex of its bytes")
    key.add_argument(
        "--token-key",
        help="tokenisation key as text, used as its UTF-8 bytes (what credstream's key_file holds)",
    )
    p.add_argument("--expect-files", type=int, required=True, help="stop after this many input messages")
    p.add_argument(
        "--batch-num-messages",
        type=int,
        default=1,
        help="producer batch.num.messages (default 1, what credstream uses on Tansu 0.6.0); 0 leaves librdkafka's default",
    )
    p.add_argument("--layout", type=Path, default=DEFAULT_LAYOUT)
    p.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    p.add_argument("--loglevel", default="WARNING", help="Quix Streams log level")
    args = p.parse_args(argv)
    t_start = time.perf_counter()

    token_key = bytes.fromhex(args.token_key_hex) if args.token_key_hex else args.token_key.encode()
    if len(token_key) < 32:
        log(f"the tokenisation key has {len(token_key)} bytes; at least 32 are required (as credstream)")
        return 2

    import confluent_kafka
    import quixstreams
    from confluent_kafka.admin import AdminClient, ConfigResource
    from quixstreams import Application
    from quixstreams.models.serializers.avro import AvroSerializer
    from quixstreams.models.serializers.schema_registry import SchemaRegistryClientConfig

    schema = json.loads(args.schema.read_text())
    layout = Layout(args.layout, schema, token_key)

    # Pre-flight: Quix derives its changelog topics' retention.ms from the input topic's
    # broker config. Tansu 0.6.0 reports only the configs a topic was created with, so an
    # input topic created without retention.ms makes Quix fail with KeyError. Say so
    # clearly instead (see README.md: the driver creates the topics with explicit configs).
    admin = AdminClient({"bootstrap.servers": args.broker})
    res = admin.describe_configs([ConfigResource("topic", args.input_topic)])
    for f in res.values():
        cfg = {k: v.value for k, v in f.result(timeout=30).items()}
        if "retention.ms" not in cfg:
            log(
                f"the broker reports no retention.ms for {args.input_topic}; Quix Streams needs it to "
                "derive its changelog topic's config. Create the input topic with an explicit "
                "retention.ms (e.g. 604800000, Kafka's default), as drive.py does."
            )
            return 2

    producer_config = {
        # As credstream's OutputProducer: acks=all and idempotence (Quix's defaults too),
        # linger 5 ms, no compression.
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "none",
    }
    if args.batch_num_messages > 0:
        producer_config["batch.num.messages"] = args.batch_num_messages
    consumer_config = {
        # What credstream's tests use against Tansu 0.6.0 (tests/support/tansu.rs).
        "fetch.wait.max.ms": 50,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        # One input message (a whole file) is processed without returning to the consumer
        # poll: allow 30 minutes for a file of millions of rows.
        "max.poll.interval.ms": 1_800_000,
    }

    stats = Stats()
    app: Application  # assigned below; the callbacks close over it

    def on_processed(topic: str, partition: int, offset: int) -> None:
        stats.processed_messages += 1
        if stats.processed_messages >= args.expect_files:
            app.stop()

    app = Application(
        broker_address=args.broker,
        consumer_group=args.consumer_group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        use_changelog_topics=True,
        processing_guarantee="at-least-once",
        producer_extra_config=producer_config,
        consumer_extra_config=consumer_config,
        on_message_processed=on_processed,
        loglevel=args.loglevel,
    )
    input_topic = app.topic(args.input_topic, key_deserializer="string", value_deserializer="json")
    output_topic = app.topic(
        args.output_topic,
        key_serializer="string",
        value_serializer=AvroSerializer(
            schema,
            schema_registry_client_config=SchemaRegistryClientConfig(url=args.registry),
        ),
    )

    layout_id = layout.layout_id

    def on_bad(e: BadRecord, index: int, line: int) -> None:
        if stats.records_bad < 20:
            log(f"bad record {index} (line {line}): {e.cls} {e.field or ''}: {e.reason}")
        stats.records_bad += 1

    def validate(data: bytes) -> dict:
        """Pass 1: every row parsed, converted and tokenised, the trailer reconciled;
        nothing leaves. Raises Held."""
        rows = parse_file(layout, data, lambda *a: None)
        while True:
            try:
                next(rows)
            except StopIteration as stop:
                return stop.value

    def records_of(data: bytes, sha: str, raw_key: str) -> Iterator[dict]:
        """Pass 2 (or the only pass): the file's good records as Avro records, lazily, so
        they are produced while the file is read (memory stays flat, as credstream's)."""
        for rec, index, line, offset in parse_file(layout, data, on_bad):
            rec["provenance"] = {
                "file_sha256": sha,
                "raw_key": raw_key,
                "record_index": index,
                "line": line,
                "byte_offset": offset,
                "layout": layout_id,
            }
            stats.records_out += 1
            yield rec

    def on_arrival(value: dict, state) -> Any:
        if stats.t_first is None:
            stats.t_first = time.perf_counter()
            stats.ru_first = resource.getrusage(resource.RUSAGE_SELF)
        stats.files += 1
        path = value["path"]
        raw_key = value.get("raw_key", "")
        data = Path(path).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        # The state is prefixed by the message key (the client id): the dedup key is
        # client/sha256, as credstream's dedup store.
        seen = state.get(sha)
        if seen is not None:
            stats.files_duplicate += 1
            log(f"duplicate file {path} (sha256 {sha}): first seen as {seen['path']}; nothing produced")
            return ()
        state.set(sha, {"path": path, "raw_key": raw_key})
        try:
            if layout.marker_in(data):
                # A trailer: validate the whole file first, as credstream does.
                validate(data)
            else:
                # No trailer: a header drift still holds the file before any record.
                check_header_only(layout, data)
        except Held as h:
            stats.files_held += 1
            log(f"file held: {path} (sha256 {sha}): {h.cls}: {h.reason}; nothing produced")
            return ()
        return records_of(data, sha, raw_key)

    sdf = app.dataframe(input_topic)
    sdf = sdf.apply(on_arrival, stateful=True, expand=True)
    sdf.to_topic(
        output_topic,
        key=lambda rec: f"{rec['provenance']['file_sha256']}:{rec['provenance']['record_index']}",
    )

    # Measurement only: note when the final checkpoint (producer flush, changelog, offsets)
    # after app.stop() has completed.
    ctx = app._processing_context  # noqa: SLF001
    commit_checkpoint = ctx.commit_checkpoint

    def timed_commit(force: bool = False, revoking: bool = False):
        commit_checkpoint(force=force, revoking=revoking)
        if force and stats.processed_messages >= args.expect_files and stats.t_flushed is None:
            stats.t_flushed = time.perf_counter()
            stats.ru_flushed = resource.getrusage(resource.RUSAGE_SELF)

    ctx.commit_checkpoint = timed_commit

    app.run()
    t_exit = time.perf_counter()
    ru = resource.getrusage(resource.RUSAGE_SELF)

    changelogs = [t.name for t in app._topic_manager.changelog_topics_list]  # noqa: SLF001
    report = {
        "peer": "quixstreams",
        "quixstreams": quixstreams.__version__,
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "python": sys.version.split()[0],
        "files": stats.files,
        "files_duplicate": stats.files_duplicate,
        "files_held": stats.files_held,
        "records_out": stats.records_out,
        "records_bad": stats.records_bad,
        "seconds": round(stats.t_flushed - stats.t_first, 3) if stats.t_flushed and stats.t_first else None,
        "seconds_startup": round(stats.t_first - t_start, 3) if stats.t_first else None,
        "seconds_to_exit": round(t_exit - stats.t_first, 3) if stats.t_first else None,
        "cpu_user_s": round(ru.ru_utime, 3),
        "cpu_sys_s": round(ru.ru_stime, 3),
        "cpu_user_s_window": round(stats.ru_flushed.ru_utime - stats.ru_first.ru_utime, 3)
        if stats.ru_flushed
        else None,
        "cpu_sys_s_window": round(stats.ru_flushed.ru_stime - stats.ru_first.ru_stime, 3)
        if stats.ru_flushed
        else None,
        "peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
        "state_mode": "RocksDB store (Quix State, rocksdict) + changelog topic on the same broker",
        "changelog_topics": changelogs,
        "processing_guarantee": "at-least-once",
        "batch_num_messages": args.batch_num_messages if args.batch_num_messages > 0 else "librdkafka default",
        "layout": layout_id,
    }
    print(json.dumps(report), flush=True)
    return 0 if stats.processed_messages >= args.expect_files else 1


if __name__ == "__main__":
    profile = os.environ.get("QUIX_PEER_PROFILE")
    if profile:
        # Diagnostics only (not for measured runs): cProfile of the whole process.
        import cProfile

        prof = cProfile.Profile()
        code = prof.runcall(main)
        prof.dump_stats(profile)
        sys.exit(code)
    sys.exit(main())
