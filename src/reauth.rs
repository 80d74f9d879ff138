//! `auth_cert_stale reauth`: a stale request is sent back to its own URL on a new connection.
//!
//! nginx refuses TLS renegotiation (and TLS 1.3 and HTTP/2 have none), so the certificate can
//! only be asked for again in a new handshake. The answer is a 307 to the same URL (as nginx
//! normalised it, on this server: see [`auth_cert_core::redirect`]), after which the
//! connection is closed; the stale session is refused at the next handshake (see
//! [`crate::session`]), so the client's next connection presents the certificate again.
//!
//! The connection is ended as [`http::answer_then_close`] does: HTTP/1.x `Connection: close`,
//! HTTP/2 GOAWAY before the redirect. HTTP/3 has no such end for one request: `nginx -t`
//! refuses the redirect in servers that listen with `quic`
//! (`auth_cert_core::decision::check_http3`).

use auth_cert_core::redirect;
use ngx::core::Status;
use ngx::http::{HTTPStatus, Request};

use crate::http;

/// Answers a stale request with a redirect to itself and the end of its connection.
pub fn redirect(r: &mut Request) -> Status {
    http::answer_then_close(r, send)
}

/// Sends the 307 to the request's own URL and finalizes the request.
fn send(r: &mut Request) -> Status {
    if !http::add_response_header(r, "Cache-Control", "no-store") {
        return Status::NGX_ERROR;
    }
    // From the normalised URI and the arguments, never the request line as sent: the
    // Location names this server even with `absolute_redirect off` (see
    // `auth_cert_core::redirect`). The header filter makes it absolute with the request's
    // scheme and host, as for nginx's own redirects.
    let location = redirect::same_server_location(r.path().as_bytes(), r.as_ref().args.as_bytes());
    let rc = http::send_response(r, HTTPStatus::TEMPORARY_REDIRECT, None, location.as_bytes());
    http::finalize(r, rc)
}
