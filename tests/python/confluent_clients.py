"""Confluent's own Python client against credstream: a client nobody on this project wrote.

Uses confluent-kafka's SchemaRegistryClient (register, look up, compatibility, config,
delete) against the registry at --registry, then reads every record of each --topic from
the broker at --bootstrap and decodes it with AvroDeserializer, fetching schemas by id
from the same registry. Prints one JSON object with what it saw; the Rust test that runs
it (tests/python_clients.rs) decides what is right.
"""

import argparse
import json
import sys
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

V1 = {"type": "record", "name": "Probe", "namespace": "py.check",
      "fields": [{"name": "a", "type": "long"}]}
# Adds a field with a default: BACKWARD compatible with V1.
V2 = {"type": "record", "name": "Probe", "namespace": "py.check",
      "fields": [{"name": "a", "type": "long"},
                 {"name": "b", "type": ["null", "string"], "default": None}]}
# Adds a field without a default: not BACKWARD compatible.
BAD = {"type": "record", "name": "Probe", "namespace": "py.check",
       "fields": [{"name": "a", "type": "long"}, {"name": "c", "type": "string"}]}


def avro(schema):
    return Schema(json.dumps(schema), "AVRO")


def registry_checks(client):
    subject = "py-check-" + uuid.uuid4().hex[:8] + "-value"
    out = {"subject": subject}
    out["id_v1"] = client.register_schema(subject, avro(V1))
    out["id_v1_again"] = client.register_schema(subject, avro(V1))
    out["compatible_v2"] = client.test_compatibility(subject, avro(V2))
    out["compatible_bad"] = client.test_compatibility(subject, avro(BAD))
    out["id_v2"] = client.register_schema(subject, avro(V2))
    latest = client.get_latest_version(subject)
    out["latest_version"] = latest.version
    out["latest_id"] = latest.schema_id
    looked_up = client.lookup_schema(subject, avro(V1))
    out["lookup_v1_version"] = looked_up.version
    out["lookup_v1_id"] = looked_up.schema_id
    out["versions"] = client.get_versions(subject)
    try:
        client.register_schema(subject, avro(BAD))
        out["register_bad"] = "accepted"
    except SchemaRegistryError as e:
        out["register_bad"] = {"http_status": e.http_status_code, "error_code": e.error_code}
    out["set_level"] = client.set_compatibility(subject, "NONE")
    out["get_level"] = client.get_compatibility(subject)
    out["compatible_bad_under_none"] = client.test_compatibility(subject, avro(BAD))
    out["global_level"] = client.get_compatibility()
    out["by_id_name"] = json.loads(client.get_schema(out["id_v2"]).schema_str)["name"]
    out["deleted_soft"] = client.delete_subject(subject)
    out["deleted_permanent"] = client.delete_subject(subject, permanent=True)
    out["subject_listed_after_delete"] = subject in client.get_subjects()
    return out


def decode_topic(bootstrap, client, topic):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "py-check-" + uuid.uuid4().hex[:8],
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 50,
    })
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = list(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    deserializer = AvroDeserializer(client)
    context = SerializationContext(topic, MessageField.VALUE)
    at_end, records, decoded, errors, samples = set(), 0, 0, [], []
    # Empty partitions report EOF at once; others after their last record.
    idle = 0
    while len(at_end) < len(partitions) and idle < 100:
        m = consumer.poll(0.2)
        if m is None:
            idle += 1
            continue
        idle = 0
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(m.partition())
                continue
            errors.append(str(m.error()))
            continue
        records += 1
        try:
            value = deserializer(m.value(), context)
            decoded += 1
            if len(samples) < 2:
                samples.append(value)
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            errors.append(f"offset {m.offset()}: {e}")
    consumer.close()
    return {"records": records, "decoded": decoded, "errors": errors[:5],
            "complete": len(at_end) == len(partitions),
            "samples": json.loads(json.dumps(samples, default=str))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", action="append", default=[])
    args = parser.parse_args()
    client = SchemaRegistryClient({"url": args.registry})
    result = {"registry": registry_checks(client), "topics": {}}
    for topic in args.topic:
        result["topics"][topic] = decode_topic(args.bootstrap, client, topic)
    json.dump(result, sys.stdout, default=str)


if __name__ == "__main__":
    main()
