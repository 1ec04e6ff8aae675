//! CORS for the OTLP/HTTP receiver, so browsers (RUM) can post from other origins.

use super::config::CorsConfig;
use http::header::{self, HeaderMap, HeaderValue};
use regex::Regex;

/// Request headers a browser may always send (rs/cors' defaults, as otelcol has them).
const DEFAULT_ALLOWED_HEADERS: [&str; 4] = ["origin", "accept", "content-type", "x-requested-with"];

/// Compiled CORS settings.
#[derive(Debug)]
pub(crate) struct Cors {
    origins: Vec<Regex>,
    allow_any_header: bool,
    allowed_headers: Vec<String>,
    exposed_headers: String,
    max_age: u64,
}

/// `https://*.example.com` -> `^https://.*\.example\.com$`.
fn origin_pattern(pattern: &str) -> Option<Regex> {
    let escaped: Vec<String> = pattern.split('*').map(regex::escape).collect();
    Regex::new(&format!("^{}$", escaped.join(".*"))).ok()
}

impl Cors {
    pub(crate) fn new(config: &CorsConfig) -> Self {
        let allow_any_header = config.allowed_headers.iter().any(|h| h == "*");
        let mut allowed_headers: Vec<String> = DEFAULT_ALLOWED_HEADERS
            .iter()
            .map(|h| h.to_string())
            .collect();
        allowed_headers.extend(
            config
                .allowed_headers
                .iter()
                .map(|h| h.to_ascii_lowercase()),
        );
        Self {
            origins: config
                .allowed_origins
                .iter()
                .filter_map(|o| origin_pattern(o))
                .collect(),
            allow_any_header,
            allowed_headers,
            exposed_headers: config.exposed_headers.join(", "),
            max_age: config.max_age,
        }
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|re| re.is_match(origin))
    }

    /// The origin of a request that a browser sent from a page CORS does not
    /// allow. A preflight stops most such requests in the browser, but not
    /// the ones that need none (`sendBeacon`, a `text/plain` or form POST),
    /// so the data of those is refused here. Requests without `Origin`
    /// (servers, SDKs outside a browser) are not concerned.
    pub(crate) fn disallowed_origin(&self, request: &HeaderMap) -> Option<String> {
        let origin = request.get(header::ORIGIN)?;
        let text = String::from_utf8_lossy(origin.as_bytes());
        (!self.origin_allowed(&text)).then(|| text.into_owned())
    }

    /// Headers for an actual (non-preflight) request from `origin`.
    pub(crate) fn response_headers(&self, request: &HeaderMap, out: &mut HeaderMap) {
        let Some(origin) = request.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
            return;
        };
        out.append(header::VARY, HeaderValue::from_static("Origin"));
        if !self.origin_allowed(origin) {
            return;
        }
        if let Ok(value) = HeaderValue::from_str(origin) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        if !self.exposed_headers.is_empty()
            && let Ok(value) = HeaderValue::from_str(&self.exposed_headers)
        {
            out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value);
        }
    }

    /// Headers answering a preflight `OPTIONS`; none when it is not allowed,
    /// which makes the browser refuse the real request.
    pub(crate) fn preflight_headers(&self, request: &HeaderMap, out: &mut HeaderMap) {
        out.append(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        let Some(origin) = request.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
            return;
        };
        if !self.origin_allowed(origin) {
            return;
        }
        let method = request
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .unwrap_or("");
        if !method.eq_ignore_ascii_case("POST") {
            return;
        }
        let requested: Vec<String> = request
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|h| h.to_str().ok())
            .map(|h| {
                h.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if !self.allow_any_header && !requested.iter().all(|h| self.allowed_headers.contains(h)) {
            return;
        }
        if let Ok(value) = HeaderValue::from_str(origin) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        if !requested.is_empty()
            && let Ok(value) = HeaderValue::from_str(&requested.join(", "))
        {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        if self.max_age > 0 {
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(self.max_age),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors::new(&CorsConfig {
            allowed_origins: vec![
                "https://*.example.com".into(),
                "http://localhost:3000".into(),
            ],
            allowed_headers: vec!["X-Custom".into()],
            exposed_headers: vec![],
            max_age: 600,
        })
    }

    #[test]
    fn origin_patterns_match_like_otelcol() {
        let c = cors();
        assert!(c.origin_allowed("https://app.example.com"));
        assert!(c.origin_allowed("https://a.b.example.com"));
        assert!(c.origin_allowed("http://localhost:3000"));
        assert!(!c.origin_allowed("https://example.com.evil.net"));
        assert!(!c.origin_allowed("http://app.example.com"));
        assert!(!c.origin_allowed("http://localhost:30001"));
    }

    #[test]
    fn preflight_allows_known_headers_only() {
        let c = cors();
        let mut req = HeaderMap::new();
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example.com"),
        );
        req.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        req.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("content-type, x-custom"),
        );
        let mut out = HeaderMap::new();
        c.preflight_headers(&req, &mut out);
        assert_eq!(
            out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.as_bytes()),
            Some(&b"https://app.example.com"[..])
        );
        assert_eq!(
            out.get(header::ACCESS_CONTROL_MAX_AGE)
                .map(|v| v.as_bytes()),
            Some(&b"600"[..])
        );

        req.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("x-secret"),
        );
        let mut out = HeaderMap::new();
        c.preflight_headers(&req, &mut out);
        assert!(out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }
}
