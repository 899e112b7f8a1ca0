//! The Avro contracts in `avro/`, one `.avsc` per topic value.

use std::collections::BTreeMap;
use std::path::Path;

use super::SchemaError;

/// The contract of `file-arrivals`.
pub const FILE_ARRIVED: &str = "file_arrived.avsc";
/// The contract of `quarantine`.
pub const QUARANTINE_RECORD: &str = "quarantine_record.avsc";
/// The contract of `file-ledger`.
pub const FILE_LEDGER_ENTRY: &str = "file_ledger_entry.avsc";

/// Built into the binary: the repository's `avro/`.
const BUILTIN: &[(&str, &str)] = &[
    (FILE_ARRIVED, include_str!("../../avro/file_arrived.avsc")),
    (
        QUARANTINE_RECORD,
        include_str!("../../avro/quarantine_record.avsc"),
    ),
    (
        FILE_LEDGER_ENTRY,
        include_str!("../../avro/file_ledger_entry.avsc"),
    ),
    (
        "card_accounts.avsc",
        include_str!("../../avro/card_accounts.avsc"),
    ),
    (
        "card_transactions.avsc",
        include_str!("../../avro/card_transactions.avsc"),
    ),
    (
        "metro2_base.avsc",
        include_str!("../../avro/metro2_base.avsc"),
    ),
];

/// Schema texts by file name.
#[derive(Clone, Debug)]
pub struct Contracts {
    texts: BTreeMap<String, String>,
}

impl Contracts {
    /// The contracts built into the binary.
    pub fn builtin() -> Contracts {
        Contracts {
            texts: BUILTIN
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        }
    }

    /// Every `*.avsc` in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Contracts, SchemaError> {
        let read_err = |source| SchemaError::Read {
            dir: dir.to_path_buf(),
            source,
        };
        let mut texts = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if path.extension().is_some_and(|x| x == "avsc") {
                let name = path
                    .file_name()
                    .expect("a listed file has a name")
                    .to_string_lossy()
                    .into_owned();
                texts.insert(name, std::fs::read_to_string(&path).map_err(read_err)?);
            }
        }
        Ok(Contracts { texts })
    }

    /// The text of one contract, checked to be a valid Avro schema.
    pub fn get(&self, name: &str) -> Result<&str, SchemaError> {
        let text = self
            .texts
            .get(name)
            .ok_or_else(|| SchemaError::UnknownContract(name.to_string()))?;
        apache_avro::Schema::parse_str(text).map_err(|e| SchemaError::Invalid {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_contract_is_valid_avro() {
        let contracts = Contracts::builtin();
        for (name, _) in BUILTIN {
            contracts.get(name).unwrap();
        }
    }
}
