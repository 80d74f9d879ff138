//! `auth_cert_stale reauth`: a stale request is sent back to its own URL on a new connection.
//!
//! nginx refuses TLS renegotiation (and TLS 1.3 and HTTP/2 have none), so the certificate can
//! only be asked for again in a new handshake. The answer is a 307 to the same URL, after
//! which the connection is closed; the stale session is refused at the next handshake (see
//! [`crate::session`]), so the client's next connection presents the certificate again.
//!
//! The connection is ended as [`http::answer_then_close`] does: HTTP/1.x `Connection: close`,
//! HTTP/2 GOAWAY before the redirect.

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
    // The header filter makes the Location absolute with the request's scheme and host, as
    // for nginx's own redirects.
    let location = r.unparsed_uri().as_bytes().to_vec();
    let rc = http::send_response(r, HTTPStatus::TEMPORARY_REDIRECT, None, &location);
    http::finalize(r, rc)
}
