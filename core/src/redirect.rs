//! The `Location` of the re-authentication redirect (`auth_cert_stale reauth`): the request's
//! own URL, and always one of this server's.
//!
//! The Location is built from the URI nginx normalised (`r->uri`: decoded, dot segments
//! resolved, slashes merged unless `merge_slashes off`) and the arguments, never from the
//! request line as sent. A relative Location that starts with `//` or `/\` names another host
//! to a browser, so the leading run of `/` and `\` is collapsed into one `/`. Everything a URL
//! may not carry raw (control characters, spaces, non-ASCII bytes, and in the path `%`, `?`
//! and `#`, which the decoded URI may hold) is percent-encoded, so that the value can neither
//! break the header nor change which part of the URL a byte belongs to.

/// The Location that sends a request back to itself on this server: `uri` is nginx's
/// normalised (decoded) path, `args` the query string as nginx keeps it (without the `?`).
/// The result is ASCII, starts with exactly one `/` followed by neither `/` nor `\`, and holds
/// no control character, space or non-ASCII byte.
pub fn same_server_location(uri: &[u8], args: &[u8]) -> String {
    let path = match uri.iter().position(|&b| b != b'/' && b != b'\\') {
        Some(start) => &uri[start..],
        None => &[],
    };
    let mut location = String::with_capacity(1 + path.len() + 1 + args.len());
    location.push('/');
    push_encoded(&mut location, path, path_byte);
    if !args.is_empty() {
        location.push('?');
        push_encoded(&mut location, args, query_byte);
    }
    location
}

/// Bytes of a path segment kept as they are (RFC 3986 `pchar` without `%`, and `/`).
fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

/// Bytes of a query kept as they are: a query keeps its own percent-encoding, and `?`.
fn query_byte(b: u8) -> bool {
    path_byte(b) || b == b'%' || b == b'?'
}

fn push_encoded(out: &mut String, bytes: &[u8], keep: fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_server_location as loc;

    /// What every Location must be: one leading `/`, then printable ASCII only.
    fn assert_same_server(l: &str) {
        assert!(l.starts_with('/'), "{l:?}");
        assert!(!l.starts_with("//") && !l.starts_with("/\\"), "{l:?}");
        assert!(l.bytes().all(|b| b.is_ascii_graphic()), "{l:?}");
    }

    #[test]
    fn plain_paths_and_args_are_kept() {
        assert_eq!(loc(b"/app/x", b""), "/app/x");
        assert_eq!(loc(b"/app/x", b"a=1&b=%2F"), "/app/x?a=1&b=%2F");
        assert_eq!(loc(b"/a:b@c;d=e,f", b"q=a/b?c"), "/a:b@c;d=e,f?q=a/b?c");
        assert_eq!(loc(b"/", b""), "/");
    }

    #[test]
    fn leading_slashes_and_backslashes_collapse() {
        for uri in [
            &b"//evil.example/x"[..],
            b"///evil.example/x",
            b"/\\evil.example/x",
            b"\\\\evil.example/x",
            b"/\\/evil.example/x",
            b"/\\\\/\\evil.example/x",
        ] {
            let l = loc(uri, b"");
            assert_eq!(l, "/evil.example/x", "{uri:?}");
            assert_same_server(&l);
        }
    }

    #[test]
    fn empty_or_all_slashes_is_the_root() {
        assert_eq!(loc(b"", b""), "/");
        assert_eq!(loc(b"//", b""), "/");
        assert_eq!(loc(b"/\\/\\", b"a=1"), "/?a=1");
    }

    #[test]
    fn relative_uri_gets_its_slash() {
        assert_eq!(loc(b"evil.example/x", b""), "/evil.example/x");
    }

    #[test]
    fn inner_backslashes_and_double_slashes_stay_in_the_path() {
        assert_eq!(loc(b"/a//b\\c", b""), "/a//b%5Cc");
    }

    #[test]
    fn decoded_delimiters_are_encoded_again() {
        // `/%2F%2Fevil` arrives decoded as `///evil` (or merged), `%3F`, `%23`, `%25` as
        // `?`, `#`, `%`.
        assert_eq!(loc(b"///evil", b""), "/evil");
        assert_eq!(loc(b"/a?b#c%d", b""), "/a%3Fb%23c%25d");
    }

    #[test]
    fn control_characters_never_reach_the_header() {
        let l = loc(b"/x\r\nSet-Cookie: a=b", b"c=\r\n\0d");
        assert_eq!(l, "/x%0D%0ASet-Cookie:%20a=b?c=%0D%0A%00d");
        assert_same_server(&l);
        assert_eq!(loc(b"/\x7f\t", b""), "/%7F%09");
    }

    #[test]
    fn spaces_quotes_and_non_ascii_are_encoded() {
        assert_eq!(
            loc("/café/ sp\"<>".as_bytes(), "q=é x".as_bytes()),
            "/caf%C3%A9/%20sp%22%3C%3E?q=%C3%A9%20x"
        );
        assert_eq!(loc(b"/\xff\x80", b""), "/%FF%80");
        assert_eq!(loc(b"/a", b"b#c"), "/a?b%23c");
    }

    #[test]
    fn every_byte_is_safe() {
        for b in 0..=u8::MAX {
            for uri in [
                vec![b],
                vec![b'/', b],
                vec![b, b'/', b'x'],
                vec![b'/', b, b, b'/'],
            ] {
                let l = loc(&uri, &[b, b'=', b]);
                assert_same_server(&l);
            }
        }
    }
}
