//! The observability kit in `grafana/`: the alert rules pass `promtool check rules` and
//! their unit tests, every dashboard is importable JSON whose panels all query valid
//! PromQL, and every metric a dashboard or a rule uses is one a running credstream
//! exports (so no panel stays empty and no alert waits for a name that never comes).
//!
//! promtool comes from Debian's `prometheus` package, which `./dev test` installs; without
//! it these tests fail (they never skip).

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use regex::Regex;
use serde_json::Value;

const RULES: &str = "grafana/alerts/credstream.rules.yml";
const RULE_TESTS: &str = "grafana/alerts/credstream.rules.test.yml";
const DASHBOARDS: &str = "grafana/dashboards";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// promtool from PATH, else Debian's /usr/bin/promtool; a failure if neither exists.
fn promtool() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file());
    let found = on_path.or_else(|| {
        let debian = PathBuf::from("/usr/bin/promtool");
        debian.is_file().then_some(debian)
    });
    found.expect(
        "promtool is not installed: run the tests with ./dev test, which installs Debian's \
         `prometheus` package (it provides /usr/bin/promtool)",
    )
}

/// Runs promtool with `args` in the repository; fails with its output unless it succeeds.
fn run_promtool(args: &[&str]) -> Result<String> {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(repo())
        .output()
        .context("running promtool")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    Ok(text)
}

/// Every dashboard: its file name and parsed JSON.
fn dashboards() -> Result<Vec<(String, Value)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(repo().join(DASHBOARDS))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)?;
            let json = serde_json::from_str(&text).with_context(|| format!("parsing {name}"))?;
            found.push((name, json));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// A dashboard's panels, nested ones (in collapsed rows) included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// A panel's non-empty target expressions.
fn exprs(panel: &Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["expr"].as_str())
        .filter(|e| !e.trim().is_empty())
        .collect()
}

/// The queries of a dashboard's template variables (`label_values(...)`).
fn variable_queries(dashboard: &Value) -> Vec<&str> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .filter_map(|v| v["query"].as_str().or_else(|| v["query"]["query"].as_str()))
        .collect()
}

/// The `expr:` of every rule in a Prometheus rule file: a one-line value, or a block
/// scalar (`expr: |`) running while lines are indented deeper than the key.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let rest = rest.trim();
        if !rest.starts_with('|') && !rest.starts_with('>') {
            exprs.push(rest.to_string());
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent;
            if !(deeper || next.trim().is_empty()) {
                break;
            }
            block.push_str(next.trim());
            block.push('\n');
            lines.next();
        }
        exprs.push(block);
    }
    exprs
}

/// credstream metric names in `text`, histogram series reduced to their base name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let name = Regex::new(r"credstream_[a-z0-9_]+").unwrap();
    name.find_iter(text)
        .map(|m| base_name(m.as_str()).to_string())
        .collect()
}

fn base_name(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

#[test]
fn the_alert_rules_pass_promtool_check() -> Result<()> {
    let report = run_promtool(&["check", "rules", RULES])?;
    ensure!(report.contains("SUCCESS"), "{report}");
    let rules = std::fs::read_to_string(repo().join(RULES))?;
    ensure!(
        rule_exprs(&rules).len() >= 6,
        "fewer rules than expected in {RULES}:\n{report}"
    );
    Ok(())
}

#[test]
fn the_alert_rules_pass_their_promtool_unit_tests() -> Result<()> {
    let report = run_promtool(&["test", "rules", RULE_TESTS])?;
    ensure!(report.contains("SUCCESS"), "{report}");
    // Every alert of the rule file has unit tests.
    let rules = std::fs::read_to_string(repo().join(RULES))?;
    let tests = std::fs::read_to_string(repo().join(RULE_TESTS))?;
    let alert = Regex::new(r"(?m)^\s*-\s*alert:\s*(\w+)").unwrap();
    for name in alert.captures_iter(&rules).map(|c| c[1].to_string()) {
        ensure!(
            tests.contains(&format!("alertname: {name}")),
            "{RULE_TESTS} does not test {name}"
        );
    }
    Ok(())
}

#[test]
fn every_dashboard_is_importable_and_every_panel_queries_valid_promql() -> Result<()> {
    let dashboards = dashboards()?;
    let names: Vec<&str> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "data-quality.json",
        "latency.json",
        "pipeline.json",
        "replicas.json",
    ] {
        ensure!(names.contains(&expected), "no {expected} in {names:?}");
    }
    let mut uids = BTreeSet::new();
    let mut all_exprs = Vec::new();
    for (name, d) in &dashboards {
        let uid = d["uid"].as_str().unwrap_or_default();
        ensure!(!uid.is_empty(), "{name} has no uid");
        ensure!(uids.insert(uid.to_string()), "{name}: uid {uid} used twice");
        ensure!(
            !d["title"].as_str().unwrap_or_default().is_empty(),
            "{name} has no title"
        );
        let panels = panels(d);
        ensure!(!panels.is_empty(), "{name} has no panels");
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            ensure!(
                panel["id"].as_u64().is_some_and(|id| ids.insert(id)),
                "{name}: panel {title:?} has no id or a duplicate one"
            );
            let exprs = exprs(panel);
            ensure!(
                !exprs.is_empty(),
                "{name}: panel {title:?} has no target with an expr"
            );
            all_exprs.extend(
                exprs
                    .iter()
                    .map(|e| (name.clone(), grafana_to_promql(d, e))),
            );
        }
        for query in variable_queries(d) {
            // label_values(<selector>, <label>): the selector must be valid PromQL.
            let selector = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(s, _)| s)
                .with_context(|| format!("{name}: unexpected variable query {query}"))?;
            all_exprs.push((name.clone(), grafana_to_promql(d, selector)));
        }
    }
    // promtool parses PromQL only in rule files: one recording rule per expression.
    let mut file = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (i, (name, expr)) in all_exprs.iter().enumerate() {
        let stem = name.trim_end_matches(".json").replace('-', "_");
        file.push_str(&format!(
            "      - record: dashboard:{stem}:expr{i}\n        expr: {}\n",
            serde_json::to_string(expr)?
        ));
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("dashboards.rules.yml");
    std::fs::write(&path, &file)?;
    run_promtool(&["check", "rules", path.to_str().unwrap()])
        .with_context(|| format!("a dashboard expression is not valid PromQL:\n{file}"))?;
    Ok(())
}

/// A dashboard expression with Grafana's variables replaced by plausible values: an
/// interval for `$__rate_interval`, `$__range` and the dashboard's interval variables, a
/// regex for the others.
fn grafana_to_promql(dashboard: &Value, expr: &str) -> String {
    let intervals: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "interval")
        .filter_map(|v| v["name"].as_str())
        .collect();
    let variable = Regex::new(r"\$\{?(\w+)\}?").unwrap();
    variable
        .replace_all(expr, |c: &regex::Captures| {
            let name = &c[1];
            if name.starts_with("__") || intervals.contains(name) {
                "5m".to_string()
            } else {
                ".+".to_string()
            }
        })
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_and_rules_use_is_exported() -> Result<()> {
    // What the dashboards (panels and variables) and the alert rules query.
    let mut used = BTreeSet::new();
    for (_, d) in dashboards()? {
        for panel in panels(&d) {
            for expr in exprs(panel) {
                used.extend(metric_names(expr));
            }
        }
        for query in variable_queries(&d) {
            used.extend(metric_names(query));
        }
    }
    let from_dashboards = used.len();
    let rules = std::fs::read_to_string(repo().join(RULES))?;
    for expr in rule_exprs(&rules) {
        used.extend(metric_names(&expr));
    }
    ensure!(
        used.len() >= 20 && from_dashboards >= 20,
        "only {} metric names used ({from_dashboards} by dashboards): {used:?}",
        used.len()
    );

    // What a running credstream exports.
    let dir = tempfile::tempdir()?;
    let demo = support::ServingDemo::start(dir.path())?;
    let api = &demo.api;
    let body = reqwest::get(format!("{api}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    let exported: BTreeSet<String> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| base_name(name).to_string())
        .collect();
    ensure!(
        exported.iter().any(|n| n.starts_with("credstream_")),
        "no credstream metric in /metrics:\n{body}"
    );
    let missing: Vec<&String> = used.difference(&exported).collect();
    ensure!(
        missing.is_empty(),
        "used by grafana/ but not exported by a running credstream: {missing:?}"
    );

    // The demo expects daily postings from acme-bank (they came) and from globex-bank
    // (they never do): both deliveries export their cutoff, only acme-bank a last accepted
    // file — what ExpectedFileMissing compares.
    // A task exports its deliveries when it processes a file and at each 30 s wall-clock
    // punctuation: globex-bank's task may have had no file yet.
    let mut body = body;
    for _ in 0..90 {
        if body.contains("client=\"globex-bank\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        body = reqwest::get(format!("{api}/metrics")).await?.text().await?;
    }
    let series = |name: &str, client: &str| {
        body.lines().any(|l| {
            l.starts_with(&format!("{name}{{"))
                && l.contains(&format!("client=\"{client}\""))
                && l.contains("category=\"card.transactions\"")
        })
    };
    let deadline = "credstream_expected_file_deadline_timestamp_seconds";
    let accepted = "credstream_file_last_accepted_timestamp_seconds";
    ensure!(
        series(deadline, "acme-bank") && series(deadline, "globex-bank"),
        "no deadline series for the demo's deliveries:\n{body}"
    );
    ensure!(
        series(accepted, "acme-bank") && !series(accepted, "globex-bank"),
        "last accepted: acme-bank's postings only:\n{body}"
    );
    Ok(())
}

#[test]
fn the_helpers_find_rule_expressions_and_metric_names() {
    let yaml = "rules:\n  - alert: A\n    expr: |\n      sum(credstream_a_total)\n      / x\n    for: 5m\n  - record: b\n    expr: credstream_b_seconds_bucket > 0\n";
    assert_eq!(
        rule_exprs(yaml),
        [
            "sum(credstream_a_total)\n/ x\n",
            "credstream_b_seconds_bucket > 0"
        ]
    );
    assert_eq!(
        metric_names("rate(credstream_b_seconds_bucket[5m]) / credstream_c_total"),
        BTreeSet::from(["credstream_b_seconds".into(), "credstream_c_total".into()])
    );
}
