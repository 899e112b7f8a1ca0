//! The registry's state as a fold over the `_schemas` log.
//!
//! Every change is a record in one compacted, single-partition topic; every registry
//! replica reads the whole log and applies it with [`RegistryState::apply`], so replicas
//! that have read the same prefix hold the same state. A writer never changes the state
//! directly: it proposes a record (a schema with the id and version it expects to get),
//! and the fold decides. Two replicas that propose the same id or version at once are
//! ordered by the log; the first wins, the second sees its proposal rejected when it
//! reads it back and proposes again against the newer state.
//!
//! Records (key and value are JSON):
//! - `{"keytype":"SCHEMA","subject","version","nonce"}` → `{"subject","version","id",
//!   "schema"}`: a version; the nonce makes each proposal its own key, so compaction never
//!   replaces an accepted version with a rejected one. A tombstone deletes the version
//!   permanently (if it was the accepted proposal) or cleans up a rejected one.
//! - `{"keytype":"DELETE_VERSION","subject","version"}` → `{"deleted":true}`: a soft
//!   delete. Accepted versions are never rewritten, only marked.
//! - `{"keytype":"CONFIG","subject":null|"s"}` → `{"compatibilityLevel":"…"}`: the
//!   global or a subject's compatibility level; a tombstone removes a subject's level.
//!
//! Architecture Invariant: the state is a pure function of the log; ids are never reused
//! by this process (a permanently deleted schema's id stays reserved), and a subject's
//! next version is one more than the highest version it holds.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::compat::CompatibilityLevel;

/// A record's key in `_schemas`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "keytype", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogKey {
    Schema {
        subject: String,
        version: u32,
        nonce: String,
    },
    DeleteVersion {
        subject: String,
        version: u32,
    },
    Config {
        subject: Option<String>,
    },
}

/// The value of a `SCHEMA` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValue {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeleteValue {
    deleted: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigValue {
    compatibility_level: CompatibilityLevel,
}

/// One version of a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub version: u32,
    pub id: u32,
    pub deleted: bool,
    /// The nonce of the accepted proposal, to recognise its tombstone.
    nonce: String,
}

/// What became of a proposal, by nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected,
}

/// Schemas by id and subjects' versions, as of some offset of the log.
#[derive(Debug, Default)]
pub struct RegistryState {
    schemas: BTreeMap<u32, String>,
    by_text: HashMap<String, u32>,
    subjects: BTreeMap<String, BTreeMap<u32, Version>>,
    global_level: Option<CompatibilityLevel>,
    subject_levels: HashMap<String, CompatibilityLevel>,
    verdicts: HashMap<String, Verdict>,
    /// Records that could not be read (logged once, then skipped).
    pub unreadable: u64,
}

impl RegistryState {
    /// Applies one record of the log (`value` `None`: a tombstone).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = serde_json::from_slice::<LogKey>(key) else {
            self.unreadable += 1;
            return;
        };
        match (key, value) {
            (LogKey::Schema { nonce, .. }, Some(v)) => {
                let Ok(v) = serde_json::from_slice::<SchemaValue>(v) else {
                    self.unreadable += 1;
                    return;
                };
                let verdict = if self.acceptable(&v) {
                    self.accept(v, nonce.clone());
                    Verdict::Accepted
                } else {
                    Verdict::Rejected
                };
                self.verdicts.insert(nonce, verdict);
            }
            (
                LogKey::Schema {
                    subject,
                    version,
                    nonce,
                },
                None,
            ) => {
                let versions = self.subjects.entry(subject.clone()).or_default();
                if versions.get(&version).is_some_and(|v| v.nonce == nonce) {
                    versions.remove(&version);
                }
                if versions.is_empty() {
                    self.subjects.remove(&subject);
                }
            }
            (LogKey::DeleteVersion { subject, version }, Some(v)) => {
                let deleted = serde_json::from_slice::<DeleteValue>(v)
                    .map(|d| d.deleted)
                    .unwrap_or(false);
                if let Some(v) = self
                    .subjects
                    .get_mut(&subject)
                    .and_then(|s| s.get_mut(&version))
                {
                    v.deleted |= deleted;
                }
            }
            (LogKey::DeleteVersion { .. }, None) => {}
            (LogKey::Config { subject }, Some(v)) => {
                let Ok(c) = serde_json::from_slice::<ConfigValue>(v) else {
                    self.unreadable += 1;
                    return;
                };
                match subject {
                    None => self.global_level = Some(c.compatibility_level),
                    Some(s) => {
                        self.subject_levels.insert(s, c.compatibility_level);
                    }
                }
            }
            (LogKey::Config { subject }, None) => match subject {
                None => self.global_level = None,
                Some(s) => {
                    self.subject_levels.remove(&s);
                }
            },
        }
    }

    /// A proposal is accepted when its version is the subject's next one, and its id is
    /// new or already names the same schema, and its schema has no other id.
    fn acceptable(&self, v: &SchemaValue) -> bool {
        v.version == self.next_version(&v.subject)
            && self.schemas.get(&v.id).is_none_or(|s| *s == v.schema)
            && self.by_text.get(&v.schema).is_none_or(|id| *id == v.id)
    }

    fn accept(&mut self, v: SchemaValue, nonce: String) {
        self.schemas.insert(v.id, v.schema.clone());
        self.by_text.insert(v.schema, v.id);
        self.subjects.entry(v.subject).or_default().insert(
            v.version,
            Version {
                version: v.version,
                id: v.id,
                deleted: false,
                nonce,
            },
        );
    }

    /// What the log decided about the proposal `nonce`, once it has been read.
    pub fn verdict(&self, nonce: &str) -> Option<Verdict> {
        self.verdicts.get(nonce).copied()
    }

    /// The version a new schema under `subject` gets.
    pub fn next_version(&self, subject: &str) -> u32 {
        self.subjects
            .get(subject)
            .and_then(|s| s.keys().next_back())
            .map_or(1, |v| v + 1)
    }

    /// The id `schema` gets: its existing one, or the next free one.
    pub fn id_for(&self, schema: &str) -> u32 {
        self.by_text
            .get(schema)
            .copied()
            .unwrap_or_else(|| self.schemas.keys().next_back().map_or(1, |id| id + 1))
    }

    pub fn schema(&self, id: u32) -> Option<&str> {
        self.schemas.get(&id).map(String::as_str)
    }

    pub fn id_of(&self, schema: &str) -> Option<u32> {
        self.by_text.get(schema).copied()
    }

    /// Subjects with at least one version (soft-deleted ones only with `deleted`).
    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, versions)| versions.values().any(|v| deleted || !v.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// A subject's versions in order, soft-deleted ones only with `deleted`; `None` when
    /// the subject has none.
    pub fn versions(&self, subject: &str, deleted: bool) -> Option<Vec<Version>> {
        let versions: Vec<Version> = self
            .subjects
            .get(subject)?
            .values()
            .filter(|v| deleted || !v.deleted)
            .cloned()
            .collect();
        (!versions.is_empty()).then_some(versions)
    }

    /// Whether the subject exists at all (even if every version is soft-deleted).
    pub fn has_subject(&self, subject: &str) -> bool {
        self.subjects.contains_key(subject)
    }

    /// The nonce of an accepted version, to write its tombstone.
    pub fn nonce_of(&self, subject: &str, version: u32) -> Option<String> {
        Some(self.subjects.get(subject)?.get(&version)?.nonce.clone())
    }

    /// `(subject, version)` pairs that use schema `id`.
    pub fn uses_of(&self, id: u32) -> Vec<(String, u32)> {
        self.subjects
            .iter()
            .flat_map(|(s, versions)| {
                versions
                    .values()
                    .filter(move |v| v.id == id && !v.deleted)
                    .map(move |v| (s.clone(), v.version))
            })
            .collect()
    }

    pub fn global_level(&self) -> CompatibilityLevel {
        self.global_level.unwrap_or_default()
    }

    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.subject_levels.get(subject).copied()
    }

    /// The level that governs `subject`: its own, else the global one.
    pub fn level_for(&self, subject: &str) -> CompatibilityLevel {
        self.subject_level(subject)
            .unwrap_or_else(|| self.global_level())
    }
}

/// Encodes a key.
pub fn key_bytes(key: &LogKey) -> Vec<u8> {
    serde_json::to_vec(key).expect("log keys serialise")
}

pub fn schema_value(v: &SchemaValue) -> Vec<u8> {
    serde_json::to_vec(v).expect("schema values serialise")
}

pub fn delete_value() -> Vec<u8> {
    serde_json::to_vec(&DeleteValue { deleted: true }).expect("serialises")
}

pub fn config_value(level: CompatibilityLevel) -> Vec<u8> {
    serde_json::to_vec(&ConfigValue {
        compatibility_level: level,
    })
    .expect("serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn propose(
        state: &mut RegistryState,
        subject: &str,
        version: u32,
        id: u32,
        schema: &str,
        nonce: &str,
    ) {
        let key = key_bytes(&LogKey::Schema {
            subject: subject.into(),
            version,
            nonce: nonce.into(),
        });
        let value = schema_value(&SchemaValue {
            subject: subject.into(),
            version,
            id,
            schema: schema.into(),
        });
        state.apply(&key, Some(&value));
    }

    #[test]
    fn the_first_of_two_racing_proposals_wins() {
        let mut s = RegistryState::default();
        propose(&mut s, "t-value", 1, 1, "\"long\"", "a");
        propose(&mut s, "t-value", 1, 1, "\"string\"", "b");
        assert_eq!(s.verdict("a"), Some(Verdict::Accepted));
        assert_eq!(s.verdict("b"), Some(Verdict::Rejected));
        assert_eq!(s.schema(1), Some("\"long\""));
        // The loser proposes again against the newer state.
        let (v, id) = (s.next_version("t-value"), s.id_for("\"string\""));
        assert_eq!((v, id), (2, 2));
        propose(&mut s, "t-value", v, id, "\"string\"", "c");
        assert_eq!(s.verdict("c"), Some(Verdict::Accepted));
        // An id may not name two schemas, nor a schema get two ids.
        propose(&mut s, "u-value", 1, 2, "\"int\"", "d");
        propose(&mut s, "u-value", 1, 3, "\"long\"", "e");
        assert_eq!(s.verdict("d"), Some(Verdict::Rejected));
        assert_eq!(s.verdict("e"), Some(Verdict::Rejected));
    }

    #[test]
    fn soft_then_permanent_delete() {
        let mut s = RegistryState::default();
        propose(&mut s, "t-value", 1, 1, "\"long\"", "a");
        propose(&mut s, "t-value", 2, 2, "\"string\"", "b");
        let del = key_bytes(&LogKey::DeleteVersion {
            subject: "t-value".into(),
            version: 1,
        });
        s.apply(&del, Some(&delete_value()));
        assert_eq!(s.versions("t-value", false).unwrap().len(), 1);
        assert_eq!(s.versions("t-value", true).unwrap().len(), 2);
        let tomb = key_bytes(&LogKey::Schema {
            subject: "t-value".into(),
            version: 1,
            nonce: "a".into(),
        });
        s.apply(&tomb, None);
        assert_eq!(s.versions("t-value", true).unwrap().len(), 1);
        // The next version follows the highest one held; the id stays reserved.
        assert_eq!(s.next_version("t-value"), 3);
        assert_eq!(s.id_for("\"int\""), 3);
    }

    #[test]
    fn config_records_set_and_clear_levels() {
        let mut s = RegistryState::default();
        assert_eq!(s.level_for("t-value"), CompatibilityLevel::Backward);
        let global = key_bytes(&LogKey::Config { subject: None });
        s.apply(&global, Some(&config_value(CompatibilityLevel::Full)));
        let subject = key_bytes(&LogKey::Config {
            subject: Some("t-value".into()),
        });
        s.apply(&subject, Some(&config_value(CompatibilityLevel::None)));
        assert_eq!(s.level_for("t-value"), CompatibilityLevel::None);
        assert_eq!(s.level_for("u-value"), CompatibilityLevel::Full);
        s.apply(&subject, None);
        assert_eq!(s.level_for("t-value"), CompatibilityLevel::Full);
    }
}
