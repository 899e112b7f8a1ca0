//! Versions of logical files, the materialised views, and the month-end reconciliation.
//!
//! Stores (each backed by a compacted changelog; every key starts with the client id, so a
//! client's state lives in one task):
//! - `versions`: `<client>/<category>/<period>[/<sequence>]` → [`VersionChain`]: every
//!   version of one logical file and which is current. Also the control-totals view.
//! - `accounts`: `<client>/<account>` → [`AccountState`]: the latest state per account,
//!   by period then version.
//! - `balances`: `<client>/<period>/<account>` → [`Balance`]: each snapshot's closing
//!   balances, for the roll-forward.
//! - `postings`: `<client>/<category>/<period>[/<sequence>]/<month>/<account>` →
//!   [`PostingSum`]: each posting file's net movement per account and month. Keyed by
//!   the file's identity, so a correction replaces exactly its predecessor's sums.
//!
//! Architecture Invariant: only the current version of a logical file contributes to
//! `accounts`, `balances` and `postings`. A correction removes what its predecessor
//! contributed in the same unit of work that adds its own.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::records::FileStatus;
use crate::formats::{ControlTotal, Identity, format_decimal};

pub const VERSIONS_STORE: &str = "versions";
pub const ACCOUNTS_STORE: &str = "accounts";
pub const BALANCES_STORE: &str = "balances";
pub const POSTINGS_STORE: &str = "postings";

/// The views the query API serves by name, with their stores.
pub const VIEWS: &[(&str, &str, &str)] = &[
    (
        "accounts",
        ACCOUNTS_STORE,
        "Account state: the latest record per account (key <client>/<account>)",
    ),
    (
        "control-totals",
        VERSIONS_STORE,
        "Every logical file's versions, the current one's counts and trailer totals (key <client>/<category>/<period>[/<sequence>])",
    ),
    (
        "balances",
        BALANCES_STORE,
        "Closing balances per snapshot period (key <client>/<period>/<account>)",
    ),
    (
        "postings",
        POSTINGS_STORE,
        "Net postings per file, month and account (key <client>/<category>/<period>[/<sequence>]/<month>/<account>)",
    ),
];

/// The key of a logical file in `versions`: `<client>/<category>/<period>`, then
/// `/<sequence>` when the identity has one.
pub fn identity_key(client: &str, category: &str, identity: &Identity) -> String {
    if identity.sequence.is_empty() {
        format!("{client}/{category}/{}", identity.period)
    } else {
        format!(
            "{client}/{category}/{}/{}",
            identity.period, identity.sequence
        )
    }
}

/// Every version of one logical file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChain {
    pub client_id: String,
    pub category: String,
    pub period: String,
    pub sequence: String,
    pub versions: Vec<Version>,
    /// The version whose records count: the latest one that was not held whole.
    pub current: Option<u32>,
}

impl VersionChain {
    pub fn current(&self) -> Option<&Version> {
        let n = self.current?;
        self.versions.iter().find(|v| v.version == n)
    }

    pub fn next_version(&self) -> u32 {
        self.versions.last().map_or(1, |v| v.version + 1)
    }
}

/// One version: a distinct set of bytes with the chain's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: u32,
    pub file_sha256: String,
    pub arrival_id: String,
    /// Key of its entry in the ledger store.
    pub ledger_key: String,
    pub file_path: String,
    pub status: FileStatus,
    pub records_in: u64,
    pub records_out: u64,
    pub records_quarantined: u64,
    /// Record indices that did not go to the output topic (quarantined one by one), so a
    /// retraction names exactly the keys that were written.
    pub not_out: Vec<u64>,
    /// The trailer's control totals, name → decimal, when it reconciled.
    pub trailer: Option<BTreeMap<String, String>>,
    /// Why the version was held, when it was.
    pub reason: Option<String>,
    pub processed_at: i64,
    /// The version that replaced this one as current.
    pub superseded_by: Option<u32>,
}

/// Control totals as a map of name → decimal text.
pub fn totals_map(totals: &[ControlTotal]) -> BTreeMap<String, String> {
    totals
        .iter()
        .map(|t| (t.field.clone(), t.to_string()))
        .collect()
}

/// `accounts`: an account's latest state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountState {
    pub client_id: String,
    pub account: String,
    pub category: String,
    pub period: String,
    pub version: u32,
    pub file_sha256: String,
    pub record_index: u64,
    /// The record's fields by name, a JSON object with its keys in order (card numbers
    /// as token and display only). Kept as text: it is written once per account record
    /// and only ever read whole.
    pub values: Box<serde_json::value::RawValue>,
}

/// An [`AccountState`] borrowed from its parts, to be written without copying them.
pub struct AccountStateRef<'a> {
    pub client_id: &'a str,
    pub account: &'a str,
    pub category: &'a str,
    pub period: &'a str,
    pub version: u32,
    pub file_sha256: &'a str,
    pub record_index: u64,
    /// A JSON object's text ([`AccountState::values`]).
    pub values: &'a str,
}

impl AccountStateRef<'_> {
    /// Appends the JSON serde_json writes for the equal [`AccountState`], byte for byte.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let string = |out: &mut Vec<u8>, key: &[u8], value: &str| {
            out.extend_from_slice(key);
            serde_json::to_writer(&mut *out, value).expect("writing to a Vec");
        };
        string(out, b"{\"client_id\":", self.client_id);
        string(out, b",\"account\":", self.account);
        string(out, b",\"category\":", self.category);
        string(out, b",\"period\":", self.period);
        write!(out, ",\"version\":{}", self.version).expect("writing to a Vec");
        string(out, b",\"file_sha256\":", self.file_sha256);
        write!(out, ",\"record_index\":{}", self.record_index).expect("writing to a Vec");
        out.extend_from_slice(b",\"values\":");
        out.extend_from_slice(self.values.as_bytes());
        out.push(b'}');
    }
}

/// A [`Balance`] borrowing its file digest; serialises to the same JSON.
#[derive(Serialize)]
pub struct BalanceRef<'a> {
    pub unscaled: i128,
    pub scale: u32,
    pub file_sha256: &'a str,
    pub version: u32,
}

/// Just the period of a stored [`AccountState`], read without the rest.
#[derive(Deserialize)]
pub struct PeriodOf {
    pub period: String,
}

/// `balances`: an account's closing balance in one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub unscaled: i128,
    pub scale: u32,
    pub file_sha256: String,
    pub version: u32,
}

/// `postings`: one file's postings to one account in one month.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingSum {
    /// Debits less credits, unscaled.
    pub net: i128,
    pub debits: u64,
    pub credits: u64,
    pub scale: u32,
    pub file_sha256: String,
}

/// What one account record of a file adds to the views: only what varies by record. The
/// rest of its [`AccountState`] and [`Balance`] (client, category, period, file, version,
/// the balance's scale) is the file's, so it is not held once per account.
#[derive(Debug)]
pub struct AccountContribution {
    /// The closing balance, unscaled (at the scale of the layout's balance field).
    pub balance: i128,
    pub record_index: u64,
    /// The record's values object as JSON text ([`AccountState::values`]).
    pub values: Box<str>,
}

/// What one file adds to the views, gathered while its records are routed.
#[derive(Debug, Default)]
pub struct Contributions {
    /// Account → its contribution; the last record of an account wins. foldhash: a
    /// million-account snapshot is a million inserts, and SipHash was a tenth of them.
    pub accounts: HashMap<String, AccountContribution, foldhash::fast::RandomState>,
    /// (month `YYYY-MM`, account) → sum.
    pub postings: HashMap<(String, String), PostingSum>,
}

/// Reads a store's entries for the reconciliation: `scan(store, prefix)` returns every
/// entry whose key starts with `prefix`, in key order.
pub trait ViewReader {
    fn scan_all(&self, store: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String>;
}

fn decode<T: serde::de::DeserializeOwned>(store: &str, key: &str, raw: &[u8]) -> Result<T, String> {
    serde_json::from_slice(raw).map_err(|e| format!("{store} entry {key} is unreadable: {e}"))
}

/// The month before `period` (`YYYY-MM`), or `None` if it is not a month.
pub fn previous_month(period: &str) -> Option<String> {
    let date = chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").ok()?;
    let prev = date.checked_sub_months(chrono::Months::new(1))?;
    Some(prev.format("%Y-%m").to_string())
}

/// Brings an unscaled amount from `from` to `to` fraction digits (`to >= from`).
fn rescale(unscaled: i128, from: u32, to: u32) -> i128 {
    unscaled * 10i128.pow(to.saturating_sub(from))
}

/// The reconciliation report of `client` for month `period` (`YYYY-MM`): every logical
/// file of the month (trailer vs parsed), and the account roll-forward — previous closing
/// balance + the month's postings = this month's closing balance — listing every
/// exception. At most `limit` exceptions are listed; all are counted.
pub fn reconciliation(
    reader: &dyn ViewReader,
    client: &str,
    period: &str,
    limit: usize,
) -> Result<Value, String> {
    let previous =
        previous_month(period).ok_or_else(|| format!("period {period:?} is not YYYY-MM"))?;
    let mut exceptions: Vec<Value> = Vec::new();

    // Files: every logical file whose period falls in the month.
    let mut files = Vec::new();
    for (key, raw) in reader.scan_all(VERSIONS_STORE, &format!("{client}/"))? {
        let chain: VersionChain = decode(VERSIONS_STORE, &key, &raw)?;
        if !(chain.period == period || chain.period.starts_with(&format!("{period}-"))) {
            continue;
        }
        let latest = chain.versions.last().expect("a chain has a version");
        let current = chain.current();
        files.push(json!({
            "category": chain.category,
            "period": chain.period,
            "sequence": chain.sequence,
            "versions": chain.versions.len(),
            "current": current.map(|v| json!({
                "version": v.version, "sha256": v.file_sha256, "path": v.file_path,
                "status": v.status.as_str(), "records_in": v.records_in,
                "records_out": v.records_out, "records_quarantined": v.records_quarantined,
                "trailer": v.trailer,
            })),
        }));
        if current.is_none_or(|c| c.version != latest.version) {
            exceptions.push(json!({
                "kind": "FILE_HELD",
                "category": chain.category,
                "period": chain.period,
                "sequence": chain.sequence,
                "path": latest.file_path,
                "sha256": latest.file_sha256,
                "version": latest.version,
                "reason": latest.reason,
                "current_version": current.map(|c| c.version),
            }));
        }
    }

    // Roll-forward.
    let balances = |p: &str| -> Result<HashMap<String, Balance>, String> {
        let prefix = format!("{client}/{p}/");
        reader
            .scan_all(BALANCES_STORE, &prefix)?
            .into_iter()
            .map(|(key, raw)| {
                let b: Balance = decode(BALANCES_STORE, &key, &raw)?;
                Ok((key[prefix.len()..].to_string(), b))
            })
            .collect()
    };
    let opening = balances(&previous)?;
    let closing = balances(period)?;
    let mut postings: HashMap<String, PostingSum> = HashMap::new();
    let client_prefix = format!("{client}/");
    for (key, raw) in reader.scan_all(POSTINGS_STORE, &client_prefix)? {
        // <client>/<identity>/<month>/<account>
        let mut parts = key[client_prefix.len()..].rsplitn(3, '/');
        let (Some(account), Some(month), Some(_)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("postings key {key} is malformed"));
        };
        if month != period {
            continue;
        }
        let p: PostingSum = decode(POSTINGS_STORE, &key, &raw)?;
        let total = postings.entry(account.to_string()).or_default();
        let scale = total.scale.max(p.scale);
        total.net = rescale(total.net, total.scale, scale) + rescale(p.net, p.scale, scale);
        total.scale = scale;
        total.debits += p.debits;
        total.credits += p.credits;
    }
    let scale = opening
        .values()
        .chain(closing.values())
        .map(|b| b.scale)
        .chain(postings.values().map(|p| p.scale))
        .max()
        .unwrap_or(2);
    let money = |u: i128| format_decimal(u, scale);
    let mut rolled = 0u64;
    let mut matched = 0u64;
    let (mut opening_total, mut postings_total, mut closing_total) = (0i128, 0i128, 0i128);
    let can_roll = !opening.is_empty() && !closing.is_empty();
    if opening.is_empty() {
        exceptions.push(json!({"kind": "NO_OPENING_SNAPSHOT", "period": previous,
            "reason": format!("no account snapshot for {previous}: the roll-forward needs its closing balances")}));
    }
    if closing.is_empty() {
        exceptions.push(json!({"kind": "NO_CLOSING_SNAPSHOT", "period": period,
            "reason": format!("no account snapshot for {period}")}));
    }
    if can_roll {
        let mut accounts: Vec<&String> = closing
            .keys()
            .chain(opening.keys())
            .chain(postings.keys())
            .collect();
        accounts.sort();
        accounts.dedup();
        for account in accounts {
            let open = opening
                .get(account)
                .map(|b| rescale(b.unscaled, b.scale, scale));
            let moved = postings
                .get(account)
                .map(|p| rescale(p.net, p.scale, scale));
            let close = closing
                .get(account)
                .map(|b| rescale(b.unscaled, b.scale, scale));
            opening_total += open.unwrap_or(0);
            postings_total += moved.unwrap_or(0);
            closing_total += close.unwrap_or(0);
            let Some(close) = close else {
                exceptions.push(match moved {
                    Some(m) => json!({"kind": "POSTINGS_WITHOUT_ACCOUNT", "account": account,
                        "postings": money(m),
                        "reason": format!("postings to {account} in {period}, which the {period} snapshot does not have")}),
                    None => json!({"kind": "ACCOUNT_MISSING", "account": account,
                        "opening": money(open.unwrap_or(0)),
                        "reason": format!("{account} is in the {previous} snapshot but not in {period}'s")}),
                });
                continue;
            };
            rolled += 1;
            let expected = open.unwrap_or(0) + moved.unwrap_or(0);
            if expected == close {
                matched += 1;
            } else {
                exceptions.push(json!({
                    "kind": "BALANCE_MISMATCH",
                    "account": account,
                    "opening": money(open.unwrap_or(0)),
                    "postings": money(moved.unwrap_or(0)),
                    "closing": money(close),
                    "difference": money(close - expected),
                    "new_account": open.is_none(),
                }));
            }
        }
    }
    let total = exceptions.len();
    let held = exceptions
        .iter()
        .filter(|e| e["kind"] == "FILE_HELD")
        .count();
    let note = (held > 0 && can_roll).then(|| {
        format!(
            "{held} file(s) of the month are held: postings they hold are not in the roll-forward, \
             so the balances they move show as mismatches until the files are corrected or replayed"
        )
    });
    exceptions.truncate(limit);
    Ok(json!({
        "client": client,
        "period": period,
        "previous_period": previous,
        "verdict": if total == 0 { "RECONCILED" } else { "EXCEPTIONS" },
        "files": files,
        "roll_forward": {
            "ran": can_roll,
            "accounts": rolled,
            "matched": matched,
            "opening_total": money(opening_total),
            "postings_total": money(postings_total),
            "closing_total": money(closing_total),
        },
        "exceptions_total": total,
        "note": note,
        "exceptions": exceptions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(BTreeMap<(String, String), Vec<u8>>);

    impl ViewReader for Mem {
        fn scan_all(&self, store: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
            Ok(self
                .0
                .iter()
                .filter(|((s, k), _)| s == store && k.starts_with(prefix))
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    /// The views are written from borrowed parts; the bytes must be what serde_json
    /// writes for the owned structs (what the stores held before, and what readers decode).
    #[test]
    fn borrowed_states_write_the_bytes_of_the_owned_ones() {
        let values = r#"{"a":"x\"y","b":null,"c":-12.5,"d":"é\u0001"}"#;
        let owned = AccountState {
            client_id: "acme \"bank\"".into(),
            account: "ACC-0001\t/é".into(),
            category: "card.accounts".into(),
            period: "2026-10".into(),
            version: 4_000_000_000,
            file_sha256: "ab".repeat(32),
            record_index: u64::MAX,
            values: serde_json::value::RawValue::from_string(values.into()).unwrap(),
        };
        let mut ours = Vec::new();
        AccountStateRef {
            client_id: &owned.client_id,
            account: &owned.account,
            category: &owned.category,
            period: &owned.period,
            version: owned.version,
            file_sha256: &owned.file_sha256,
            record_index: owned.record_index,
            values,
        }
        .write_json(&mut ours);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&owned).unwrap()
        );
        let period: PeriodOf =
            serde_json::from_str(&serde_json::to_string(&owned).unwrap()).unwrap();
        assert_eq!(period.period, "2026-10");
        for unscaled in [i128::MIN, -1, 0, 123_456_789_012_345_678_901] {
            let owned = Balance {
                unscaled,
                scale: 2,
                file_sha256: "cd".repeat(32),
                version: 7,
            };
            let ours = BalanceRef {
                unscaled,
                scale: 2,
                file_sha256: &owned.file_sha256,
                version: 7,
            };
            assert_eq!(
                serde_json::to_vec(&ours).unwrap(),
                serde_json::to_vec(&owned).unwrap()
            );
        }
    }

    fn balance(unscaled: i128) -> Vec<u8> {
        serde_json::to_vec(&Balance {
            unscaled,
            scale: 2,
            file_sha256: "s".into(),
            version: 1,
        })
        .unwrap()
    }

    fn posting(net: i128) -> Vec<u8> {
        serde_json::to_vec(&PostingSum {
            net,
            debits: 1,
            credits: 0,
            scale: 2,
            file_sha256: "p".into(),
        })
        .unwrap()
    }

    #[test]
    fn the_roll_forward_lists_exactly_the_accounts_that_do_not_add_up() {
        let mut m = BTreeMap::new();
        let mut put = |store: &str, key: &str, v: Vec<u8>| {
            m.insert((store.to_string(), key.to_string()), v);
        };
        put(BALANCES_STORE, "c/2026-09/A", balance(10_000));
        put(BALANCES_STORE, "c/2026-09/B", balance(500));
        put(BALANCES_STORE, "c/2026-10/A", balance(12_500));
        put(BALANCES_STORE, "c/2026-10/B", balance(600));
        put(BALANCES_STORE, "c/2026-10/N", balance(100));
        put(
            POSTINGS_STORE,
            "c/card.transactions/2026-10-01/01/2026-10/A",
            posting(2_000),
        );
        put(
            POSTINGS_STORE,
            "c/card.transactions/2026-10-02/01/2026-10/A",
            posting(500),
        );
        put(
            POSTINGS_STORE,
            "c/card.transactions/2026-10-02/01/2026-10/N",
            posting(100),
        );
        // A posting of another month is not in October's roll-forward.
        put(
            POSTINGS_STORE,
            "c/card.transactions/2026-11-01/01/2026-11/B",
            posting(7),
        );
        // Another client's data is not read.
        put(BALANCES_STORE, "d/2026-10/A", balance(1));
        let report = reconciliation(&Mem(m), "c", "2026-10", 100).unwrap();
        assert_eq!(report["verdict"], "EXCEPTIONS");
        assert_eq!(report["roll_forward"]["accounts"], 3);
        assert_eq!(report["roll_forward"]["matched"], 2);
        let exceptions = report["exceptions"].as_array().unwrap();
        assert_eq!(exceptions.len(), 1, "{exceptions:?}");
        assert_eq!(exceptions[0]["kind"], "BALANCE_MISMATCH");
        assert_eq!(exceptions[0]["account"], "B");
        assert_eq!(exceptions[0]["difference"], "1.00");
        assert_eq!(report["roll_forward"]["closing_total"], "132.00");
    }

    #[test]
    fn months_step_back_across_years() {
        assert_eq!(previous_month("2026-01").as_deref(), Some("2025-12"));
        assert_eq!(previous_month("2026-10").as_deref(), Some("2026-09"));
        assert_eq!(previous_month("2026-13"), None);
    }
}
