//! `auth_cert_stale reauth`: a stale request is sent back to its own URL on a new connection.
//!
//! nginx refuses TLS renegotiation (and TLS 1.3 and HTTP/2 have none), so the certificate can
//! only be asked for again in a new handshake. The answer is a 307 to the same URL (as nginx
//! normalised it, on this server: see [`auth_cert_core::redirect`]), after which the
//! connection is closed; the stale session is refused at the next handshake (see
//! [`crate::session`]), so the client's next connection presents the certificate again.
//!
//! HTTP/1.x: `Connection: close`. HTTP/2: the whole connection is closed the way nginx closes
//! it on a graceful shutdown: its read handler, seeing `close`, sends GOAWAY, lets the streams
//! in flight finish, then closes. The GOAWAY must reach the client before the redirect, or a
//! client may send the redirected request on the same connection first; the 307 is therefore
//! sent from a posted event, after the GOAWAY.

use core::ffi::c_void;
use core::ptr;

use auth_cert_core::redirect;
use ngx::core::Status;
use ngx::ffi::{
    ngx_delete_posted_event, ngx_event_t, ngx_http_finalize_request, ngx_http_request_t,
    ngx_http_run_posted_requests, ngx_pcalloc, ngx_pool_cleanup_add, ngx_post_event,
    ngx_posted_events,
};
use ngx::http::{HTTPStatus, Request};

use crate::http;

/// Answers a stale request with a redirect to itself and the end of its connection.
pub fn redirect(r: &mut Request) -> Status {
    answer_and_close(r, send, redirect_h2)
}

/// Answers `r` with `send`, which finalizes it, and ends its connection: HTTP/1.x at once,
/// with `Connection: close`; HTTP/2 from a posted event, whose handler `h2` calls
/// [`answer_h2`] with the same `send`, so that the GOAWAY goes first. Returns `NGX_DONE`.
pub fn answer_and_close(
    r: &mut Request,
    send: fn(&mut Request) -> Status,
    h2: unsafe extern "C" fn(*mut ngx_event_t),
) -> Status {
    if r.as_ref().stream.is_null() {
        r.as_mut().set_keepalive(0);
        return send(r);
    }
    let r: *mut ngx_http_request_t = r.into();
    // SAFETY: a live request. HTTP/2: the answer waits for a posted event, queued behind
    // nothing of this request.
    unsafe {
        let ev = ngx_pcalloc((*r).pool, size_of::<ngx_event_t>()).cast::<ngx_event_t>();
        let cleanup = ngx_pool_cleanup_add((*r).pool, 0);
        let Some((ev, cleanup)) = ev.as_mut().zip(cleanup.as_mut()) else {
            return Status::NGX_ERROR;
        };
        ev.handler = Some(h2);
        ev.data = r.cast();
        ev.log = (*(*r).connection).log;
        // Should the request go away first, its event must leave the posted queue with it.
        cleanup.handler = Some(forget_event);
        cleanup.data = ptr::from_mut(ev).cast();
        ngx_post_event(ev, ptr::addr_of_mut!(ngx_posted_events));
    }
    Status::NGX_DONE
}

unsafe extern "C" fn forget_event(data: *mut c_void) {
    let ev = data.cast::<ngx_event_t>();
    // SAFETY: the cleanup's data is the event allocated with it in the same pool.
    unsafe {
        if (*ev).posted() != 0 {
            ngx_delete_posted_event(ev);
        }
    }
}

/// The posted HTTP/2 redirect.
unsafe extern "C" fn redirect_h2(ev: *mut ngx_event_t) {
    // SAFETY: nginx runs the event posted by `redirect`.
    unsafe { answer_h2(ev, send) }
}

/// The posted HTTP/2 answer: GOAWAY on the connection first, then the answer of `send`.
///
/// # Safety
/// `ev` must be the event posted by [`answer_and_close`].
pub unsafe fn answer_h2(ev: *mut ngx_event_t, send: fn(&mut Request) -> Status) {
    // SAFETY: the event's data is its request, alive as long as the event is posted (see
    // `forget_event`); the stream and its connection live as long as the request.
    unsafe {
        let r = (*ev).data.cast::<ngx_http_request_t>();
        let fc = (*r).connection;
        if let Some(stream) = (*r).stream.as_ref() {
            let c = (*stream.connection).connection;
            let read = (*c).read;
            (*c).set_close(1);
            // What nginx's own graceful shutdown does (ngx_close_idle_connections): the
            // stream of this request is still open, so the handler sends GOAWAY and returns.
            if let Some(handler) = (*read).handler {
                handler(read);
            }
        }
        let rc = send(Request::from_ngx_http_request(r));
        if rc != Status::NGX_DONE {
            ngx_http_finalize_request(r, rc.0);
        }
        ngx_http_run_posted_requests(fc);
    }
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
