//! `OTEL_EBPF_OPEN_PORT`: the ports whose listeners are instrumented, as a
//! list of ports and ranges (`80,443,8000-8999`).

use std::fmt;
use std::ops::RangeInclusive;

/// A set of TCP ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PortSet {
    ranges: Vec<RangeInclusive<u16>>,
}

/// A port list that does not parse; says which part and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid port list {list:?}: {part:?} {why}")]
pub(crate) struct PortSetError {
    list: String,
    part: String,
    why: &'static str,
}

impl PortSet {
    /// Parses `80,443,8000-8999` (spaces allowed around items).
    pub(crate) fn parse(list: &str) -> Result<Self, PortSetError> {
        let error = |part: &str, why| PortSetError {
            list: list.to_string(),
            part: part.to_string(),
            why,
        };
        let port = |text: &str| -> Result<u16, PortSetError> {
            match text.trim().parse::<u16>() {
                Ok(0) => Err(error(text, "is not a port (1-65535)")),
                Ok(p) => Ok(p),
                Err(_) => Err(error(text, "is not a port (1-65535)")),
            }
        };
        let mut ranges = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let range = match part.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = (port(low)?, port(high)?);
                    if low > high {
                        return Err(error(part, "is a range whose start is after its end"));
                    }
                    low..=high
                }
                None => {
                    let p = port(part)?;
                    p..=p
                }
            };
            ranges.push(range);
        }
        Ok(PortSet { ranges })
    }

    /// Whether `port` is in the set.
    pub(crate) fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(&port))
    }

    /// Whether the set is empty (nothing is instrumented).
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        let set = PortSet::parse("80, 443,8000-8999").expect("parses");
        for p in [80, 443, 8000, 8500, 8999] {
            assert!(set.contains(p), "{p}");
        }
        for p in [81, 442, 7999, 9000] {
            assert!(!set.contains(p), "{p}");
        }
        assert_eq!(set.to_string(), "80,443,8000-8999");
        assert!(PortSet::parse("").expect("empty").is_empty());
    }

    #[test]
    fn errors_name_the_part() {
        let e = PortSet::parse("80,http").expect_err("bad");
        assert_eq!(
            e.to_string(),
            r#"invalid port list "80,http": "http" is not a port (1-65535)"#
        );
        assert!(PortSet::parse("9000-8000").is_err());
        assert!(PortSet::parse("0").is_err());
        assert!(PortSet::parse("70000").is_err());
    }
}
