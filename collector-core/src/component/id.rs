//! Component identifiers: `type[/name]`, as otelcol writes them.

use std::fmt;
use std::str::FromStr;

/// A component id such as `otlp`, `otlp/to` or `loadbalancing/gateway`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    kind: String,
    name: Option<String>,
}

impl ComponentId {
    /// An id from a type and an optional name.
    pub fn new(kind: impl Into<String>, name: Option<&str>) -> Self {
        Self {
            kind: kind.into(),
            name: name.map(str::to_string),
        }
    }

    /// The component type (the factory it is built by), e.g. `otlp`.
    pub fn type_name(&self) -> &str {
        &self.kind
    }

    /// The part after `/`, when present.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{}", self.kind, name),
            None => f.write_str(&self.kind),
        }
    }
}

impl FromStr for ComponentId {
    type Err = String;

    /// Type names follow otelcol's rule: a letter, then letters, digits or `_`
    /// (at most 63 characters). The name may be any non-empty text without spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (kind, name) = match s.split_once('/') {
            Some((kind, name)) => (kind, Some(name)),
            None => (s, None),
        };
        let valid_type = kind.len() <= 63
            && kind.starts_with(|c: char| c.is_ascii_alphabetic())
            && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_type {
            return Err(format!(
                "invalid component id {s:?}: the type must start with a letter and contain only letters, digits and '_'"
            ));
        }
        if let Some(name) = name
            && (name.is_empty() || name.chars().any(char::is_whitespace))
        {
            return Err(format!(
                "invalid component id {s:?}: the name after '/' must be non-empty without spaces"
            ));
        }
        Ok(Self::new(kind, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids() {
        let id: ComponentId = "loadbalancing/gateway"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.type_name(), "loadbalancing");
        assert_eq!(id.name(), Some("gateway"));
        assert_eq!(id.to_string(), "loadbalancing/gateway");
        let plain: ComponentId = "otlp".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.name(), None);
        for bad in ["", "/x", "1otlp", "otlp/", "ot-lp", "otlp/a b"] {
            assert!(bad.parse::<ComponentId>().is_err(), "{bad:?}");
        }
    }
}
