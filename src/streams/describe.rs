//! `topology describe`: a topology's shape as text, Mermaid or DOT.

use std::fmt::Write;

use super::TopologyShape;
use super::runtime::changelog_topic;

/// Output formats of [`describe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DescribeFormat {
    /// Indented text, in the manner of Kafka Streams' `TopologyDescription`.
    Text,
    /// A Mermaid flowchart (renders in GitHub and most wikis).
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// Describes `shape` as run under application id `app_id`.
pub fn describe(shape: &TopologyShape, app_id: &str, format: DescribeFormat) -> String {
    let mut out = String::new();
    let changelogs: Vec<(String, String)> = shape
        .stores
        .iter()
        .map(|s| (s.clone(), changelog_topic(app_id, s)))
        .collect();
    match format {
        DescribeFormat::Text => {
            let _ = writeln!(out, "Topology: {} (application id {app_id})", shape.name);
            let _ = writeln!(
                out,
                "  Sub-topology: 0 (one task per partition of {})",
                shape.source
            );
            let _ = writeln!(
                out,
                "    Source: {} (topics: [{}])",
                shape.source, shape.source
            );
            let _ = writeln!(out, "      --> {}", shape.processor);
            let _ = writeln!(
                out,
                "    Processor: {} (stores: [{}])",
                shape.processor,
                shape.stores.join(", ")
            );
            let _ = writeln!(out, "      --> {}", shape.sinks.join(", "));
            let _ = writeln!(out, "      <-- {}", shape.source);
            for sink in &shape.sinks {
                let _ = writeln!(out, "    Sink: {sink} (topic: {sink})");
                let _ = writeln!(out, "      <-- {}", shape.processor);
            }
            for (store, changelog) in &changelogs {
                let _ = writeln!(
                    out,
                    "    Store: {store} (RocksDB; changelog {changelog}, compacted)"
                );
            }
        }
        DescribeFormat::Mermaid => {
            let _ = writeln!(out, "flowchart LR");
            let _ = writeln!(out, "  source[/\"{}\"/]", shape.source);
            let _ = writeln!(out, "  processor[\"{}\"]", shape.processor);
            let _ = writeln!(out, "  source --> processor");
            for (i, sink) in shape.sinks.iter().enumerate() {
                let _ = writeln!(out, "  sink{i}[/\"{sink}\"/]");
                let _ = writeln!(out, "  processor --> sink{i}");
            }
            for (i, (store, changelog)) in changelogs.iter().enumerate() {
                let _ = writeln!(out, "  store{i}[(\"{store}\")]");
                let _ = writeln!(out, "  changelog{i}[/\"{changelog}\"/]");
                let _ = writeln!(out, "  processor <--> store{i}");
                let _ = writeln!(out, "  store{i} -.-> changelog{i}");
            }
        }
        DescribeFormat::Dot => {
            let _ = writeln!(out, "digraph \"{}\" {{", shape.name);
            let _ = writeln!(out, "  rankdir=LR;");
            let _ = writeln!(out, "  \"{}\" [shape=cds];", shape.source);
            let _ = writeln!(out, "  \"{}\" [shape=box];", shape.processor);
            let _ = writeln!(out, "  \"{}\" -> \"{}\";", shape.source, shape.processor);
            for sink in &shape.sinks {
                let _ = writeln!(out, "  \"{sink}\" [shape=cds];");
                let _ = writeln!(out, "  \"{}\" -> \"{sink}\";", shape.processor);
            }
            for (store, changelog) in &changelogs {
                let _ = writeln!(out, "  \"{store}\" [shape=cylinder];");
                let _ = writeln!(out, "  \"{changelog}\" [shape=cds];");
                let _ = writeln!(out, "  \"{}\" -> \"{store}\" [dir=both];", shape.processor);
                let _ = writeln!(out, "  \"{store}\" -> \"{changelog}\" [style=dashed];");
            }
            let _ = writeln!(out, "}}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> TopologyShape {
        TopologyShape {
            name: "t".into(),
            source: "in".into(),
            processor: "p".into(),
            stores: vec!["s".into()],
            sinks: vec!["out".into()],
        }
    }

    #[test]
    fn every_format_names_every_node() {
        for format in [
            DescribeFormat::Text,
            DescribeFormat::Mermaid,
            DescribeFormat::Dot,
        ] {
            let text = describe(&shape(), "app", format);
            for name in ["in", "p", "s", "out", "app-s-changelog"] {
                assert!(text.contains(name), "{format:?} lacks {name}:\n{text}");
            }
        }
        assert!(describe(&shape(), "app", DescribeFormat::Dot).starts_with("digraph"));
        assert!(describe(&shape(), "app", DescribeFormat::Mermaid).starts_with("flowchart LR"));
    }
}
