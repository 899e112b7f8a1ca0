//! A client of the query API, and `credstream query` on it: GET requests with an optional
//! bearer token, the API's JSON errors (`{"error": {"code", "message"}}`) as
//! [`ClientError::Api`], and cursor paging (`next_cursor`) for the lists.
//!
//! Architecture Invariant: it only reads, through the HTTP API; it knows nothing of stores,
//! Kafka or how the API is served.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::ErrorKind;
use crate::cli::{OutputFormat, QueryArgs, QueryCommand};
use crate::config::Secret;

/// How long a connection may take to open, and a whole request to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of the query API client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error: its code and message, as it gave them.
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("query API {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("query API {url}: unexpected answer: {message}")]
    BadResponse { url: String, message: String },
    #[error("--api {url:?} is not an http(s) URL{detail}")]
    BadUrl { url: String, detail: String },
    #[error("token file {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "timed out after {waited_s} s waiting for the topology to process {}: {}; the requests stay sent, follow them at /v1/files/<sha256>",
        crate::progress::plural(pending.len() as u64, "replay"),
        pending.join(", ")
    )]
    WaitTimedOut { waited_s: u64, pending: Vec<String> },
}

impl ClientError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Api { status, code, .. } if *status >= 500 || code == "unavailable" => {
                ErrorKind::External
            }
            // Not found, a bad request: what was asked for is wrong, not the system.
            ClientError::Api { .. } => ErrorKind::Data,
            ClientError::Unreachable { .. }
            | ClientError::BadResponse { .. }
            | ClientError::WaitTimedOut { .. } => ErrorKind::External,
            ClientError::BadUrl { .. } | ClientError::Token { .. } => ErrorKind::Config,
        }
    }

    /// Whether the API said the thing asked for does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }
}

/// An error and its sources, `: `-separated (reqwest's own message names only the URL).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A connection to one query API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: reqwest::Url,
    token: Option<Secret>,
}

impl ApiClient {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8080`), sending `token` as a
    /// bearer token when given.
    pub fn new(base: &str, token: Option<Secret>) -> Result<ApiClient, ClientError> {
        let bad = |detail: String| ClientError::BadUrl {
            url: base.to_string(),
            detail,
        };
        let url = reqwest::Url::parse(base).map_err(|e| bad(format!(": {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(bad(String::new()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: base.to_string(),
                message: chain(&e),
            })?;
        Ok(ApiClient {
            http,
            base: url,
            token,
        })
    }

    /// The token in `file` (surrounding whitespace removed), else `from_env` (the
    /// CREDSTREAM_TOKEN variable the binary read), else none.
    pub fn token(
        file: Option<&Path>,
        from_env: Option<String>,
    ) -> Result<Option<Secret>, ClientError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ClientError::Token {
                path: path.to_path_buf(),
                source,
            })?,
            None => match from_env {
                Some(t) => t,
                None => return Ok(None),
            },
        };
        let token = text.trim();
        if token.is_empty() {
            return match file {
                Some(path) => Err(ClientError::Token {
                    path: path.to_path_buf(),
                    source: std::io::Error::other("the file is empty"),
                }),
                None => Ok(None),
            };
        }
        Ok(Some(Secret::new(token)))
    }

    /// The URL of `segments` under the base (each percent-encoded as one path segment)
    /// with `query` pairs (empty values left out).
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("the base URL was checked to be one")
            .pop_if_empty()
            .extend(segments);
        url.set_query(None);
        for (k, v) in query {
            if !v.is_empty() {
                url.query_pairs_mut().append_pair(k, v);
            }
        }
        url
    }

    /// GETs `url` and returns its JSON; an error answer as [`ClientError::Api`].
    pub async fn get(&self, url: reqwest::Url) -> Result<Value, ClientError> {
        let mut request = self.http.get(url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            message: chain(&e),
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                message: chain(&e),
            })?;
        let json: Result<Value, _> = serde_json::from_slice(&body);
        if status.is_success() {
            return json.map_err(|e| ClientError::BadResponse {
                url: url.to_string(),
                message: format!("the body is not JSON: {e}"),
            });
        }
        // The API's own errors are JSON; anything else (a proxy's page) is shown briefly.
        let (code, message) = match json {
            Ok(v) if v["error"]["code"].is_string() => (
                v["error"]["code"].as_str().unwrap_or_default().to_string(),
                v["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.trim().chars().take(200).collect();
                (
                    format!("http_{}", status.as_u16()),
                    if text.is_empty() {
                        status.canonical_reason().unwrap_or("no reason").to_string()
                    } else {
                        text
                    },
                )
            }
        };
        Err(ClientError::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// GETs the list at `segments` with `query`, and hands each item of its `field` to
    /// `each`; with `all`, follows `next_cursor` until the last page. Returns the first
    /// page with `field` emptied and the `next_cursor` left (none after `all`).
    pub async fn list(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        field: &str,
        all: bool,
        mut each: impl FnMut(Value) -> Result<(), crate::Error>,
    ) -> Result<Value, crate::Error> {
        let mut first: Option<Value> = None;
        let mut cursor: Option<String> = None;
        loop {
            let mut pairs = query.to_vec();
            if let Some(c) = &cursor {
                pairs.push(("cursor", c));
            }
            let url = self.url(segments, &pairs);
            let mut page = self.get(url.clone()).await?;
            let items = match page.get_mut(field).map(Value::take) {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(ClientError::BadResponse {
                        url: url.to_string(),
                        message: format!("no {field:?} list"),
                    }
                    .into());
                }
            };
            for item in items {
                each(item)?;
            }
            let next = match page.get("next_cursor") {
                Some(Value::String(c)) => Some(c.clone()),
                _ => None,
            };
            if let Value::Object(obj) = &mut page {
                obj.insert(field.into(), Value::Array(Vec::new()));
            }
            let first = first.get_or_insert(page);
            match next {
                Some(next) if all => {
                    // A cursor that does not move would page forever.
                    if cursor.as_deref() == Some(next.as_str()) {
                        return Err(ClientError::BadResponse {
                            url: url.to_string(),
                            message: format!("next_cursor {next:?} repeats"),
                        }
                        .into());
                    }
                    cursor = Some(next);
                }
                next => {
                    first["next_cursor"] = next.map_or(Value::Null, Value::String);
                    return Ok(first.take());
                }
            }
        }
    }
}

/// Runs `credstream query`.
pub async fn run(api: &ApiClient, args: QueryArgs) -> Result<(), crate::Error> {
    let output = args.output;
    let result = match args.what {
        QueryCommand::Files {
            client,
            status,
            category,
            period,
            limit,
            all,
        } => {
            let limit = limit.map(|l| l.to_string());
            let query = [
                ("client", client.as_deref().unwrap_or_default()),
                ("status", status.as_deref().unwrap_or_default()),
                ("category", category.as_deref().unwrap_or_default()),
                ("period", period.as_deref().unwrap_or_default()),
                ("limit", limit.as_deref().unwrap_or_default()),
            ];
            print_list(api, &["v1", "files"], &query, "files", all, output).await
        }
        QueryCommand::File { sha256 } => {
            let url = api.url(&["v1", "files", &sha256], &[]);
            print_one(api.get(url).await?, output)
        }
        QueryCommand::Views => {
            let views = api.get(api.url(&["v1", "views"], &[])).await?;
            match output {
                OutputFormat::Pretty => print_one(views, output),
                OutputFormat::Jsonl => print_lines(views["views"].as_array().into_iter().flatten()),
            }
        }
        QueryCommand::View {
            name,
            key: Some(key),
            ..
        } => {
            // A key's `/` separate path segments, as the route `/v1/views/{view}/{*key}`
            // takes them; anything else in it is percent-encoded.
            let mut segments = vec!["v1", "views", name.as_str()];
            segments.extend(key.split('/'));
            print_one(api.get(api.url(&segments, &[])).await?, output)
        }
        QueryCommand::View {
            name,
            key: None,
            prefix,
            limit,
            all,
        } => {
            let limit = limit.map(|l| l.to_string());
            let query = [
                ("prefix", prefix.as_deref().unwrap_or_default()),
                ("limit", limit.as_deref().unwrap_or_default()),
            ];
            print_list(api, &["v1", "views", &name], &query, "entries", all, output).await
        }
        QueryCommand::Quarantine {
            client,
            file,
            class,
            category,
            limit,
            all,
        } => {
            let limit = limit.map(|l| l.to_string());
            let query = [
                ("client", client.as_deref().unwrap_or_default()),
                ("file", file.as_deref().unwrap_or_default()),
                ("class", class.as_deref().unwrap_or_default()),
                ("category", category.as_deref().unwrap_or_default()),
                ("limit", limit.as_deref().unwrap_or_default()),
            ];
            print_list(api, &["v1", "quarantine"], &query, "entries", all, output).await
        }
        QueryCommand::Report { client, period } => {
            let url = api.url(
                &["v1", "reports", "reconciliation"],
                &[("client", &client), ("period", &period)],
            );
            print_one(api.get(url).await?, output)
        }
    };
    match result {
        // `credstream query … | head`: the reader has what it wanted.
        Err(crate::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        other => other,
    }
}

fn output_error(e: std::io::Error) -> crate::Error {
    crate::Error::io("writing the output", e)
}

/// Prints one JSON document: indented, or on one line.
fn print_one(value: Value, output: OutputFormat) -> Result<(), crate::Error> {
    let mut out = std::io::stdout().lock();
    match output {
        OutputFormat::Pretty => serde_json::to_writer_pretty(&mut out, &value),
        OutputFormat::Jsonl => serde_json::to_writer(&mut out, &value),
    }
    .map_err(|e| output_error(e.into()))?;
    writeln!(out)
        .and_then(|()| out.flush())
        .map_err(output_error)
}

/// Prints each value on a line of its own.
fn print_lines<'a>(values: impl IntoIterator<Item = &'a Value>) -> Result<(), crate::Error> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for v in values {
        writeln!(out, "{v}").map_err(output_error)?;
    }
    out.flush().map_err(output_error)
}

/// Prints a list: with `jsonl` each item on its line as its page arrives; pretty, the first
/// page's document holding every item read. With `all`, a spinner counts the items on
/// standard error; without, a note there says when there is more.
async fn print_list(
    api: &ApiClient,
    segments: &[&str],
    query: &[(&str, &str)],
    field: &str,
    all: bool,
    output: OutputFormat,
) -> Result<(), crate::Error> {
    let spinner = all.then(|| crate::progress::spinner("query", field));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut items = Vec::new();
    let mut count = 0u64;
    let listed = api
        .list(segments, query, field, all, |item| {
            count += 1;
            if let Some(s) = &spinner {
                s.inc(1);
            }
            match output {
                OutputFormat::Jsonl => writeln!(out, "{item}").map_err(output_error),
                OutputFormat::Pretty => {
                    items.push(item);
                    Ok(())
                }
            }
        })
        .await;
    if let Some(s) = &spinner {
        s.finish_and_clear();
    }
    let mut page = listed?;
    let more = !page["next_cursor"].is_null();
    match output {
        OutputFormat::Jsonl => out.flush().map_err(output_error)?,
        OutputFormat::Pretty => {
            drop(out);
            page[field] = Value::Array(items);
            print_one(page, output)?;
        }
    }
    if all {
        eprintln!("query: {count} {field} in all");
    } else if more && output == OutputFormat::Jsonl {
        eprintln!("query: {count} {field} shown and there are more: pass --all for every page");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_each_segment_and_leave_out_empty_parameters() {
        let api = ApiClient::new("http://127.0.0.1:8080/base/", None).unwrap();
        let url = api.url(
            &["v1", "views", "accounts", "acme bank", "ACC#1"],
            &[("prefix", "a/b&c"), ("limit", "")],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/base/v1/views/accounts/acme%20bank/ACC%231?prefix=a%2Fb%26c"
        );
        assert!(ApiClient::new("ftp://host", None).is_err());
        assert!(ApiClient::new("127.0.0.1:8080", None).is_err());
        assert_eq!(
            ApiClient::new("nonsense", None).unwrap_err().kind(),
            ErrorKind::Config
        );
    }

    #[test]
    fn tokens_come_from_the_file_or_the_environment_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret\n").unwrap();
        let token = ApiClient::token(Some(&file), Some("env".into())).unwrap();
        assert_eq!(token.unwrap().expose(), "s3cret");
        let token = ApiClient::token(None, Some("env".into())).unwrap();
        assert_eq!(token.unwrap().expose(), "env");
        assert!(ApiClient::token(None, None).unwrap().is_none());
        std::fs::write(&file, "\n").unwrap();
        assert!(ApiClient::token(Some(&file), None).is_err());
        let missing = ApiClient::token(Some(&dir.path().join("missing")), None).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Config);
    }

    #[test]
    fn api_errors_exit_as_outside_failures_only_when_the_server_failed() {
        let api = |status, code: &str| ClientError::Api {
            status,
            code: code.into(),
            message: "m".into(),
        };
        assert_eq!(api(404, "not_found").kind(), ErrorKind::Data);
        assert_eq!(api(400, "bad_request").kind(), ErrorKind::Data);
        assert_eq!(api(503, "unavailable").kind(), ErrorKind::External);
        assert_eq!(api(500, "internal").kind(), ErrorKind::External);
        assert_eq!(api(404, "not_found").to_string(), "not_found: m");
        assert!(api(404, "not_found").is_not_found());
    }
}
