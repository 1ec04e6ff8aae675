//! The config loader: YAML documents merged, `--set` overrides applied,
//! `${env:VAR}` references expanded, then split into components. Input:
//! documents separated by a line `---8<---`, then, after a line `---set---`,
//! one override per line. Errors are fine, panics and hangs are not.
#![no_main]

use collector_core::config::Config;
use collector_core::config::load::{ConfigSource, load_sources};
use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("0.0.0.0".into()),
        "PORT" => Some("4317".into()),
        "NESTED" => Some("${env:HOST}".into()),
        "MAP" => Some("{a: 1}".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (documents, sets) = text.split_once("\n---set---\n").unwrap_or((text, ""));
    let sources: Vec<ConfigSource> = documents
        .split("\n---8<---\n")
        .enumerate()
        .map(|(i, yaml)| ConfigSource::Text {
            label: format!("fuzz {i}"),
            yaml: yaml.to_string(),
        })
        .collect();
    let overrides: Vec<String> = sets.lines().map(str::to_string).collect();
    if let Ok(value) = load_sources(&sources, &overrides, &env) {
        let _ = Config::from_value(value);
    }
});
