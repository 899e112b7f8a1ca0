#!/usr/bin/env python3
"""Checks that the peer's parser (quix_peer.py) reads a card.accounts file as credstream does:
same records (values, token, display, line, byte offset), same bad records (index, class,
field), same verdict (held or not, trailer reconciliation). No Kafka: it compares
`credstream parse` (JSON lines) with quix_peer.parse_file on the same bytes.

Cases: a clean generated file, the same with bad values planted, and the trailer's count
and total off by one (`credstream gen accounts --bad-trailer`).

    python benches/peer/parity.py [--records 2000] [--credstream PATH]
"""

import argparse
import datetime
import decimal
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quix_peer as q  # noqa: E402

KEY = "0123456789abcdef0123456789abcdef"  # 32 bytes, benches/cpu_path.rs' test key
DEFAULT_BIN = Path.home() / ".cache/credstream/target/debug/credstream"


def credstream_parse(binary: Path, path: Path):
    env = dict(os.environ, CREDSTREAM_TOKENISATION__KEY=KEY)
    out = subprocess.run(
        [str(binary), "parse", str(path), "--category", "card.accounts", "--log", "error"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    records, issues, verdict = {}, {}, None
    for line in out.stdout.splitlines():
        j = json.loads(line)
        if j["type"] == "record":
            records[j["record_index"]] = j
        elif j["type"] == "issue":
            issues[j["record_index"]] = j
        elif j["type"] == "verdict":
            verdict = j
    return records, issues, verdict


def as_credstream_json(rec: dict, layout: q.Layout) -> dict:
    out = {}
    for f in layout.fields:
        if f.type == "pan":
            tok = rec[f.name + "_token"]
            out[f.name] = None if tok is None else {"token": tok, "display": rec[f.name + "_display"]}
            continue
        v = rec[f.name]
        if isinstance(v, decimal.Decimal):
            v = f"{v:.{f.scale}f}"
        elif isinstance(v, datetime.date):
            v = v.isoformat()
        out[f.name] = v
    return out


def peer_parse(layout: q.Layout, data: bytes):
    records, issues = {}, {}

    def on_bad(e, index, line):
        issues[index] = {"class": e.cls, "field": e.field, "line": line}

    held = None
    gen = q.parse_file(layout, data, on_bad)
    try:
        while True:
            rec, index, line, offset = next(gen)
            records[index] = (rec, line, offset)
    except StopIteration:
        pass
    except q.Held as h:
        held = h
    return records, issues, held


def compare(name: str, binary: Path, layout: q.Layout, path: Path) -> bool:
    data = path.read_bytes()
    c_records, c_issues, verdict = credstream_parse(binary, path)
    p_records, p_issues, held = peer_parse(layout, data)
    problems = []
    c_held = bool(verdict and verdict.get("held"))
    if c_held != (held is not None):
        problems.append(f"held: credstream {c_held} ({verdict}), peer {held}")
    if not c_held:
        if sorted(c_records) != sorted(p_records):
            problems.append(f"record indices differ: {len(c_records)} vs {len(p_records)}")
        for i, c in c_records.items():
            if i not in p_records:
                continue
            rec, line, offset = p_records[i]
            if c["values"] != as_credstream_json(rec, layout) or c["line"] != line:
                problems.append(f"record {i} differs:\n  credstream {c}\n  peer {as_credstream_json(rec, layout)} line {line}")
                break
        for i, c in c_issues.items():
            p = p_issues.get(i)
            if p is None or p["class"] != c["class"] or p["field"] != c.get("field") or p["line"] != c["line"]:
                problems.append(f"issue {i}: credstream {c}, peer {p}")
        for i in p_issues:
            if i not in c_issues:
                problems.append(f"peer-only issue {i}: {p_issues[i]}")
    print(
        f"{name}: credstream records={len(c_records)} issues={len(c_issues)} held={c_held}; "
        f"peer records={len(p_records)} issues={len(p_issues)} held={held.cls if held else False}: "
        + ("OK" if not problems else "DIFFERENT")
    )
    for p in problems[:10]:
        print("  " + p)
    return not problems


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--credstream", type=Path, default=Path(os.environ.get("CREDSTREAM_BIN", DEFAULT_BIN)))
    args = ap.parse_args()
    schema = json.loads(q.DEFAULT_SCHEMA.read_text())
    layout = q.Layout(q.DEFAULT_LAYOUT, schema, KEY.encode())
    ok = True
    with tempfile.TemporaryDirectory(prefix="credstream-parity-") as d:
        d = Path(d)
        gen = [str(args.credstream), "gen", "accounts", "--records", str(args.records), "--seed", "7",
               "--cycle-end", "2026-10-31", "--log", "error"]
        clean = d / "accounts_2026-10.csv"
        subprocess.run(gen + ["--trailer", "-o", str(clean)], check=True, timeout=120)
        ok &= compare("clean", args.credstream, layout, clean)

        # Planted bad values (record-level issues; the trailer total still matches since
        # no CycleEndingBalance is touched).
        lines = clean.read_bytes().split(b"\n")
        header = lines[0].decode().split(",")
        col = {c: i for i, c in enumerate(header)}
        plants = [
            (1, "CreditCardType", "3"),          # OUT_OF_DOMAIN
            (2, "AccountOriginationDate", "2012-13-16"),  # TYPE_MISMATCH date
            (3, "CycleBeginningBalance", "10.123"),       # more than 2 decimals
            (4, "CurrentCreditLimit", "-1.00"),           # below min 0
            (5, "DaysPastDue", "x"),                      # not an integer
            (6, "CustomerId", ""),                        # required, missing
            (7, "CardNumber", "12345"),                   # not a card number
            (8, "ProductType", "04"),                     # allowed as a number: 04 is 4
            (9, "CardNumber", "4000-0015 2429-4337"),     # dashes and spaces are dropped
            (10, "OriginalCreditLimit", "+5."),           # sign and no fraction digits
        ]
        for row, column, value in plants:
            cells = lines[row + 1].decode().split(",")
            cells[col[column]] = value
            lines[row + 1] = ",".join(cells).encode()
        planted = d / "planted_2026-10.csv"
        planted.write_bytes(b"\n".join(lines))
        ok &= compare("planted", args.credstream, layout, planted)

        for fault in ("count", "sum"):
            bad = d / f"bad_{fault}_2026-10.csv"
            subprocess.run(gen + ["--bad-trailer", fault, "-o", str(bad)], check=True, timeout=120)
            ok &= compare(f"bad trailer ({fault})", args.credstream, layout, bad)

        extra = d / "extra_2026-10.csv"
        subprocess.run(gen + ["--trailer", "--extra-column", "Foo", "-o", str(extra)], check=True, timeout=120)
        ok &= compare("extra column", args.credstream, layout, extra)
    print("parity:", "OK" if ok else "DIFFERENCES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
