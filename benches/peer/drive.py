#!/usr/bin/env python3
"""One bounded run of the Quix Streams peer on fresh services, all on 127.0.0.1:

1. starts Tansu (memory storage) and credstream's schema registry on free ports;
2. creates the input and output topics (6 partitions each) with explicit configs,
   retention.ms among them (see README.md: why, and why it is fair);
3. generates an account master file (`credstream gen accounts --trailer`);
4. produces one arrival message for it (and with --duplicate a second one for the same
   bytes, which the peer's dedup state must skip);
5. runs quix_peer.py until it has processed those messages, and prints its JSON line;
6. checks the output topic: the high watermarks add up to records_out (and, when the
   producer batched, the records counted by reading the topic, since Tansu 0.6.0's high
   watermark is wrong for multi-record batches); decodes a few records with Confluent's
   AvroDeserializer through the registry;
7. stops everything it started, also on failure or a signal.

Prints the peer's JSON line, then one JSON line of its own (`"driver": ...`).

    python benches/peer/drive.py [--records 100000] [--duplicate] [--batch-num-messages 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import shutil
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER = HERE / "quix_peer.py"
DEFAULT_CREDSTREAM = Path.home() / ".cache/credstream/target/debug/credstream"
DEFAULT_TANSU = Path.home() / ".cargo/bin/tansu"
TOKEN_KEY = "0123456789abcdef0123456789abcdef"  # benches/cpu_path.rs' 32-byte test key
CLIENT = "client-a"

# Topic configs the driver states explicitly. Tansu 0.6.0 reports exactly the configs a
# topic was created with (none otherwise); a real Kafka broker reports its defaults. These
# are Kafka's defaults for a regular topic, so Quix sees what it would see on Kafka.
TOPIC_CONFIG = {"retention.ms": "604800000", "retention.bytes": "-1", "cleanup.policy": "delete"}

# Client settings for Tansu 0.6.0, as tests/support/tansu.rs.
TANSU_PRODUCER = {"batch.num.messages": 1, "message.timeout.ms": 15000, "log_level": 4}
TANSU_CONSUMER = {"fetch.wait.max.ms": 50, "session.timeout.ms": 6000, "log_level": 4}
QUIET = {"log_level": 4}  # the driver's own clients: warnings and worse only


def log(msg: str) -> None:
    print(f"drive: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Failed(Exception):
    pass


class Services:
    """Everything this run started, stopped in reverse order by stop()."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def spawn(self, name: str, argv: list[str], env=None, stdout=None) -> subprocess.Popen:
        logf = open(self.workdir / f"{name}.log", "wb")
        p = subprocess.Popen(
            argv,
            stdout=stdout if stdout is not None else logf,
            stderr=logf,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, killed by pid below
        )
        self.procs.append((name, p))
        return p

    def stop(self) -> None:
        for name, p in reversed(self.procs):
            if p.poll() is None:
                # Tansu (memory://) has nothing to flush: SIGKILL, as the test suite does.
                sig = signal.SIGKILL if name == "tansu" else signal.SIGTERM
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait(timeout=5)
        self.procs.clear()

    def cpu_seconds(self, name: str) -> float | None:
        """User + system CPU seconds of a running child so far (/proc/<pid>/stat)."""
        for n, p in self.procs:
            if n == name and p.poll() is None:
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
        return None

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def system_cpu() -> tuple[float, float]:
    """Machine-wide (busy, steal) CPU seconds so far, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = f[:8]
    tck = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tck, steal / tck


def wait_until(what: str, check, timeout: float, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Failed(f"{what}: the process exited with {proc.returncode}")
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - readiness probes fail until ready
            last = e
        time.sleep(0.1)
    raise Failed(f"{what}: not ready within {timeout:.0f} s ({last})")


def start_tansu(svc: Services, tansu: Path) -> str:
    from confluent_kafka.admin import AdminClient

    for attempt in range(3):
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        env = dict(os.environ, RUST_LOG=os.environ.get("TANSU_RUST_LOG", "warn"))
        p = svc.spawn(
            "tansu",
            [str(tansu), "broker", "--cluster-id", "peer-bench", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            env=env,
        )
        bootstrap = f"127.0.0.1:{port}"
        try:
            # TCP first, so the admin client does not log refused connections.
            wait_until("Tansu port", lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, 30, p)
            admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
            wait_until("Tansu", lambda: admin.list_topics(timeout=2) is not None, 30, p)
            return bootstrap
        except Failed as e:
            log(f"Tansu attempt {attempt + 1} on port {port} failed: {e}\n{svc.tail('tansu')}")
            svc.stop()
    raise Failed("Tansu did not start")


def start_registry(svc: Services, credstream: Path, bootstrap: str) -> str:
    port = free_port()
    p = svc.spawn(
        "registry",
        [str(credstream), "registry", "--listen", f"127.0.0.1:{port}", "--brokers", bootstrap,
         "--kafka-property", "batch.num.messages=1", "--log", "warn"],
    )
    url = f"http://127.0.0.1:{port}"

    def ready():
        with urllib.request.urlopen(f"{url}/subjects", timeout=2) as r:
            return r.status == 200

    wait_until("schema registry", ready, 60, p)
    return url


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    futures = admin.create_topics(
        [NewTopic(name, n, 1, config=dict(TOPIC_CONFIG)) for name, n in topics.items()],
        operation_timeout=30,
    )
    for name, f in futures.items():
        f.result(timeout=30)
    wait_until(
        "topics",
        lambda: all(t in admin.list_topics(timeout=2).topics for t in topics),
        30,
    )


def produce_arrivals(bootstrap: str, topic: str, path: Path, sha: str, copies: int) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, **TANSU_PRODUCER})
    value = json.dumps(
        {"path": str(path), "client_id": CLIENT, "raw_key": f"sha256/{sha[:2]}/{sha}"}
    ).encode()
    errors = []
    for _ in range(copies):
        p.produce(topic, key=CLIENT.encode(), value=value,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    remaining = p.flush(30)
    del p
    if remaining != 0 or errors:
        raise Failed(f"arrival messages not delivered: {errors}")


def topic_config(bootstrap: str, topic: str) -> dict:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    res = admin.describe_configs([ConfigResource("topic", topic)])
    return {k: v.value for f in res.values() for k, v in f.result(timeout=10).items()}


def watermarks(bootstrap: str, topic: str) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "peer-bench-check", **TANSU_CONSUMER})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        highs = []
        for part in sorted(md.partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
            highs.append(hi - lo)
        return highs
    finally:
        c.close()


def read_topic(bootstrap: str, registry: str, topic: str, expect: int, timeout: float, decode: int):
    """Reads the whole topic from the start: the record count, distinct keys and the first
    `decode` values decoded with Confluent's AvroDeserializer via the registry."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    deser = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "peer-bench-read",
                  "enable.auto.commit": False, **TANSU_CONSUMER})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        count, keys, decoded = 0, set(), []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if expect == 0 and len(decoded) >= decode:
                break  # only a sample was wanted
            msgs = c.consume(10000, timeout=0.5)
            if not msgs:
                if (count > 0 and count >= expect) or time.monotonic() - quiet_since > 10:
                    break
                continue
            quiet_since = time.monotonic()
            for m in msgs:
                if m.error():
                    raise Failed(f"reading {topic}: {m.error()}")
                count += 1
                keys.add(m.key())
                if len(decoded) < decode:
                    decoded.append(deser(m.value(), SerializationContext(topic, MessageField.VALUE)))
        return count, len(keys), decoded
    finally:
        c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--duplicate", action="store_true", help="send the same file twice; the second must be skipped")
    ap.add_argument("--bad-trailer", choices=["count", "sum"], help="spoil the trailer: the file must be held")
    ap.add_argument("--batch-num-messages", type=int, default=1,
                    help="the peer producer's batch.num.messages (default 1); 0 = librdkafka's default (batched)")
    ap.add_argument("--timeout", type=float, default=1800, help="bound on the peer's run, seconds")
    ap.add_argument("--read-back", choices=["auto", "always", "never"], default="auto",
                    help="count the output by reading it (auto: when batched, where watermarks are unreliable)")
    ap.add_argument("--credstream", type=Path, default=Path(os.environ.get("CREDSTREAM_BIN", DEFAULT_CREDSTREAM)))
    ap.add_argument("--tansu", type=Path, default=Path(os.environ.get("TANSU_BIN", DEFAULT_TANSU)))
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, file, state)")
    args = ap.parse_args()

    for b in (args.credstream, args.tansu):
        if not b.exists():
            log(f"{b} is missing")
            return 2

    # SIGTERM / SIGHUP -> the finally below still stops everything.
    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    workdir = Path(tempfile.mkdtemp(prefix="credstream-peer-"))
    svc = Services(workdir)
    failed = True
    try:
        t0 = time.monotonic()
        bootstrap = start_tansu(svc, args.tansu)
        registry = start_registry(svc, args.credstream, bootstrap)
        input_topic, output_topic = "peer.arrivals", "peer.card.accounts"
        create_topics(bootstrap, {input_topic: 6, output_topic: 6})
        log(f"Tansu {bootstrap}, registry {registry}, topics created ({time.monotonic() - t0:.1f} s)")

        drop = workdir / "drop"
        drop.mkdir()
        path = drop / "accounts_2026-10.csv"
        gen = [str(args.credstream), "gen", "accounts", "--records", str(args.records), "--seed", "7",
               "--cycle-end", "2026-10-31", "--log", "error", "-o", str(path)]
        gen += ["--bad-trailer", args.bad_trailer] if args.bad_trailer else ["--trailer"]
        subprocess.run(gen, check=True, timeout=600, stderr=subprocess.DEVNULL)
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        log(f"generated {path.name}: {args.records} records, {len(data)} bytes, sha256 {sha}")
        del data
        copies = 2 if args.duplicate else 1
        produce_arrivals(bootstrap, input_topic, path, sha, copies)
        tansu_cpu_before = svc.cpu_seconds("tansu")
        registry_cpu_before = svc.cpu_seconds("registry")
        sys_before = system_cpu()

        peer = svc.spawn(
            "peer",
            [sys.executable, str(PEER), "--broker", bootstrap, "--registry", registry,
             "--input-topic", input_topic, "--output-topic", output_topic,
             "--state-dir", str(workdir / "state"), "--consumer-group", "peer-bench",
             "--token-key-hex", TOKEN_KEY.encode().hex(), "--expect-files", str(copies),
             "--batch-num-messages", str(args.batch_num_messages)],
            stdout=subprocess.PIPE,
        )
        try:
            out, _ = peer.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            raise Failed(f"the peer did not finish within {args.timeout:.0f} s") from None
        for l in (workdir / "peer.log").read_text(errors="replace").splitlines():
            if l.startswith("quix_peer:"):
                log(f"peer said: {l}")
        if peer.returncode != 0:
            raise Failed(f"the peer exited with {peer.returncode}:\n{svc.tail('peer')}")
        tansu_cpu_after = svc.cpu_seconds("tansu")
        registry_cpu_after = svc.cpu_seconds("registry")
        sys_after = system_cpu()
        line = out.decode().strip().splitlines()[-1]
        report = json.loads(line)
        print(line, flush=True)

        highs = watermarks(bootstrap, output_topic)
        batched = args.batch_num_messages != 1
        read_back = args.read_back == "always" or (args.read_back == "auto" and batched)
        expected_out = 0 if args.bad_trailer else args.records
        checks = {
            "records_out == generated records": report["records_out"] == expected_out,
            "files_duplicate == copies - 1": report["files_duplicate"] == copies - 1,
            "files_held": report["files_held"] == (1 if args.bad_trailer else 0),
        }
        if not batched:
            checks["sum of high watermarks == records_out"] = sum(highs) == report["records_out"]
        read = None
        if read_back or report["records_out"] > 0:
            n = report["records_out"] if read_back else 0
            count, distinct, decoded = read_topic(
                bootstrap, registry, output_topic, n, timeout=max(120, n / 2000), decode=3
            )
            if read_back:
                checks["records read == records_out"] = count == report["records_out"]
                checks["distinct keys == records_out"] = distinct == report["records_out"]
                read = count
            if report["records_out"] > 0:
                d = decoded[0] if decoded else {}
                checks["a record decodes via the registry"] = bool(
                    decoded and d.get("provenance", {}).get("file_sha256") == sha
                    and len(d.get("CardNumber_token") or "") == 64
                )
        changelog = None
        if report["changelog_topics"]:
            cl = report["changelog_topics"][0]
            cl_highs = watermarks(bootstrap, cl)
            checks["changelog holds the dedup entry"] = sum(cl_highs) >= 1
            changelog = {"topic": cl, "partitions": len(cl_highs), "records": sum(cl_highs),
                         "config": topic_config(bootstrap, cl)}
        secs = report["seconds"]
        cpu = report["cpu_user_s"] + report["cpu_sys_s"]
        cpu_w = (report["cpu_user_s_window"] or 0) + (report["cpu_sys_s_window"] or 0)
        summary = {
            "driver": "benches/peer/drive.py",
            "records": args.records,
            "batch_num_messages": args.batch_num_messages,
            "duplicate": args.duplicate,
            "output_high_watermarks": highs,
            "records_read_back": read,
            "changelog": changelog,
            "records_per_s": round(report["records_out"] / secs, 1) if secs and report["records_out"] else None,
            "cpu_s_per_million_records": round(cpu / report["records_out"] * 1e6, 1) if report["records_out"] else None,
            "cpu_s_per_million_records_window": round(cpu_w / report["records_out"] * 1e6, 1) if report["records_out"] else None,
            # Broker CPU while the peer ran (start-up, group join and shutdown included).
            "tansu_cpu_s_during_peer": round(tansu_cpu_after - tansu_cpu_before, 2)
            if tansu_cpu_after is not None and tansu_cpu_before is not None else None,
            # Contention check: CPU the rest of the machine used while the peer ran
            # (machine-wide busy time minus the peer, Tansu and the registry), and the
            # hypervisor's steal. Near 0 on a quiet machine.
            "other_cpu_s_during_peer": round(
                (sys_after[0] - sys_before[0]) - cpu
                - ((tansu_cpu_after or 0) - (tansu_cpu_before or 0))
                - ((registry_cpu_after or 0) - (registry_cpu_before or 0)), 2),
            "steal_s_during_peer": round(sys_after[1] - sys_before[1], 2),
            "loadavg_after": Path("/proc/loadavg").read_text().split()[0],
            "checks": checks,
            "ok": all(checks.values()),
        }
        print(json.dumps(summary), flush=True)
        failed = not summary["ok"]
        if failed:
            log(f"checks failed: {checks}")
        return 0 if not failed else 1
    except (Failed, subprocess.SubprocessError, KeyboardInterrupt) as e:
        log(f"failed: {e}")
        for name in ("peer", "registry", "tansu"):
            t = svc.tail(name, 15)
            if t:
                log(f"--- {name}.log (tail) ---\n{t}")
        return 1
    finally:
        svc.stop()
        if args.keep or failed:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
