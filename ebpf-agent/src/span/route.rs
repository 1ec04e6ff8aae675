//! `http.route` without a router to ask: the path with ID-like segments
//! replaced by `{id}`, so `/users/42/orders/9f1c...` groups as
//! `/users/{id}/orders/{id}` while `/api/v1/health` stays as it is.

/// Whether a path segment looks like an identifier rather than a name.
fn id_like(segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let digits = segment.bytes().filter(u8::is_ascii_digit).count();
    if digits == segment.len() {
        // 42, 2024
        return true;
    }
    if is_uuid(segment) {
        return true;
    }
    let hex = segment.bytes().all(|b| b.is_ascii_hexdigit());
    if hex && segment.len() >= 8 && digits > 0 {
        // 9f1c2b3a, object ids, hashes
        return true;
    }
    // Long tokens mixing letters and digits (base64url ids, slugs with
    // numbers): names are rarely 16+ characters with digits in them.
    segment.len() >= 16
        && digits > 0
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_uuid(segment: &str) -> bool {
    let b = segment.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The route for a request target (path, maybe with a query).
pub(crate) fn route(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or("");
    // An absolute-form target (to a proxy): keep the path only.
    let path = match path.find("://") {
        Some(scheme_end) => {
            let rest = &path[scheme_end + 3..];
            rest.find('/').map_or("/", |i| &rest[i..])
        }
        None => path,
    };
    if path.is_empty() || path == "*" {
        return "/".to_string();
    }
    path.split('/')
        .map(|segment| if id_like(segment) { "{id}" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn replaces_id_like_segments_only() {
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("/api/v1/health", "/api/v1/health"),
            ("/users/42", "/users/{id}"),
            ("/users/42/orders/7?expand=true", "/users/{id}/orders/{id}"),
            ("/items/123e4567-e89b-12d3-a456-426614174000", "/items/{id}"),
            ("/blobs/9f1c2b3a4d5e6f70", "/blobs/{id}"),
            ("/files/deadbeef", "/files/deadbeef"),
            ("/t/AbCdEf0123456789xyz", "/t/{id}"),
            ("/static/app.js", "/static/app.js"),
            ("/v2/", "/v2/"),
            ("http://example.com/a/1", "/a/{id}"),
        ];
        for (target, want) in cases {
            assert_eq!(route(target), want, "{target}");
        }
    }
}
