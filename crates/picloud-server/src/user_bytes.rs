//! Headers for bytes users uploaded, served from the dashboard's origin (API.md
//! "Serving user bytes"). Whatever a file claims to be, the browser must never run
//! it as a page of this origin: no sniffing, a sandboxed document if it is rendered
//! at all, and anything that could be active content only as a download.

use axum::http::{header, HeaderMap, HeaderValue};

/// The `type/subtype` of a media type, lower-cased, without parameters.
fn essence(content_type: &str) -> String {
    content_type
        .split([';', ','])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Media types a browser renders without running script: raster images, audio,
/// video and PDF (its viewer runs in its own process, outside this origin's reach).
pub fn is_inert(content_type: &str) -> bool {
    let essence = essence(content_type);
    const RASTER: [&str; 11] = [
        "image/png",
        "image/apng",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "image/tiff",
        "image/heic",
    ];
    RASTER.contains(&essence.as_str())
        || essence == "application/pdf"
        || (essence.starts_with("audio/") || essence.starts_with("video/"))
            && !essence.contains('+')
}

/// Sets the protective headers on a download of `name` stored as `content_type`.
pub fn protect(headers: &mut HeaderMap, name: &str, content_type: &str) {
    let inert = is_inert(content_type);
    // An active type is sent as opaque bytes: even a client that ignores the
    // attachment disposition gets nothing to render. An inert one is sent as its bare
    // `type/subtype`: whatever followed it (a parameter, a `,` and a second type the
    // browser would prefer) never reaches the browser.
    let served = if inert {
        HeaderValue::from_str(&essence(content_type)).ok()
    } else {
        None
    };
    headers.insert(
        header::CONTENT_TYPE,
        served.unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    let disposition = format!(
        "{}; filename=\"{}\"; filename*=UTF-8''{}",
        if inert { "inline" } else { "attachment" },
        ascii_fallback(name),
        percent_encode(name)
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
}

/// The name for clients without RFC 6266 support: printable ASCII, no quotes or
/// backslashes, everything else `_`.
fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// RFC 5987 `attr-char`s as they are, every other byte of the UTF-8 name as `%XX`.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        protect(&mut h, name, content_type);
        h
    }

    fn get(h: &HeaderMap, name: header::HeaderName) -> &str {
        h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[test]
    fn active_types_download_as_opaque_attachments() {
        for ct in [
            "text/html",
            "TEXT/HTML; charset=utf-8",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/javascript",
            "application/octet-stream",
            "text/plain",
            "video/x-svg+xml",
        ] {
            let h = headers("x.html", ct);
            assert!(
                get(&h, header::CONTENT_DISPOSITION).starts_with("attachment;"),
                "{ct}"
            );
            assert_eq!(get(&h, header::CONTENT_TYPE), "application/octet-stream");
            assert_eq!(get(&h, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert!(get(&h, header::CONTENT_SECURITY_POLICY).starts_with("sandbox"));
        }
    }

    #[test]
    fn inert_types_render_inline_sandboxed() {
        for ct in [
            "image/png",
            "image/JPEG",
            "audio/mpeg",
            "video/mp4",
            "application/pdf",
        ] {
            let h = headers("a.png", ct);
            assert!(
                get(&h, header::CONTENT_DISPOSITION).starts_with("inline;"),
                "{ct}"
            );
            assert_eq!(get(&h, header::CONTENT_TYPE), ct.to_ascii_lowercase());
            assert!(get(&h, header::CONTENT_SECURITY_POLICY).starts_with("sandbox"));
        }
    }

    #[test]
    fn a_second_type_after_an_inert_one_never_reaches_the_browser() {
        for ct in [
            "image/png;a=b,text/html",
            "video/mp4;x=y,text/html",
            "application/pdf;x=\"a,b\",text/html",
            "image/png,text/html",
        ] {
            let h = headers("x.png", ct);
            let served = get(&h, header::CONTENT_TYPE);
            assert!(
                !served.contains("html") && !served.contains(','),
                "{ct} → {served}"
            );
        }
        let h = headers("x.png", "image/png; charset=x");
        assert_eq!(get(&h, header::CONTENT_TYPE), "image/png");
    }

    #[test]
    fn names_are_encoded_never_injected() {
        let h = headers("ré\"sumé\r\nSet-Cookie: x.html", "text/html");
        let d = get(&h, header::CONTENT_DISPOSITION);
        assert!(!d.contains('\r') && !d.contains('\n'));
        assert!(
            d.contains("filename*=UTF-8''r%C3%A9%22sum%C3%A9%0D%0ASet-Cookie%3A%20x.html"),
            "{d}"
        );
        assert!(
            d.contains("filename=\"r__sum___Set-Cookie: x.html\""),
            "{d}"
        );
    }
}
