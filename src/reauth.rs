//! `auth_cert_stale reauth`: a stale request is sent back to its own URL on a new connection.
//!
//! nginx refuses TLS renegotiation (and TLS 1.3 and HTTP/2 have none), so the certificate can
//! only be asked for again in a new handshake. The answer is a 307 to the same URL, after
//! which the connection is closed; the stale session is refused at the next handshake (see
//! [`crate::session`]), so the client's next connection presents the certificate again.
//!
//! HTTP/1.x: `Connection: close`. HTTP/2: the whole connection is closed the way nginx closes
//! it on a graceful shutdown: its read handler, seeing `close`, sends GOAWAY, lets the streams
//! in flight finish, then closes. The GOAWAY must reach the client before the redirect, or a
//! client may send the redirected request on the same connection first; the 307 is therefore
//! sent from a posted event, after the GOAWAY.

use core::ffi::c_void;
use core::mem;
use core::ptr;

use ngx::ffi::{
    ngx_delete_posted_event, ngx_event_t, ngx_http_complex_value_t, ngx_http_finalize_request,
    ngx_http_request_t, ngx_http_run_posted_requests, ngx_http_send_response, ngx_int_t,
    ngx_pcalloc, ngx_pool_cleanup_add, ngx_post_event, ngx_posted_events, ngx_uint_t, NGX_DONE,
    NGX_ERROR, NGX_HTTP_TEMPORARY_REDIRECT,
};
use ngx::http::Request;

use crate::handler;

/// Answers a stale request with a redirect to itself and the end of its connection.
///
/// # Safety
/// `r` must be the request of a running access phase handler.
pub unsafe fn redirect(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: caller: `r` is valid.
    unsafe {
        if (*r).stream.is_null() {
            (*r).set_keepalive(0);
            return send(r);
        }
        // HTTP/2: the answer waits for a posted event, queued behind nothing of this request.
        let ev = ngx_pcalloc((*r).pool, mem::size_of::<ngx_event_t>()).cast::<ngx_event_t>();
        let cleanup = ngx_pool_cleanup_add((*r).pool, 0);
        let Some((ev, cleanup)) = ev.as_mut().zip(cleanup.as_mut()) else {
            return NGX_ERROR as ngx_int_t;
        };
        ev.handler = Some(redirect_h2);
        ev.data = r.cast();
        ev.log = (*(*r).connection).log;
        // Should the request go away first, its event must leave the posted queue with it.
        cleanup.handler = Some(forget_event);
        cleanup.data = ptr::from_mut(ev).cast();
        ngx_post_event(ev, ptr::addr_of_mut!(ngx_posted_events));
        NGX_DONE as ngx_int_t
    }
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

/// The posted HTTP/2 answer: GOAWAY on the connection first, then the redirect.
unsafe extern "C" fn redirect_h2(ev: *mut ngx_event_t) {
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
        let rc = send(r);
        if rc != NGX_DONE as ngx_int_t {
            ngx_http_finalize_request(r, rc);
        }
        ngx_http_run_posted_requests(fc);
    }
}

/// Sends the 307 to the request's own URL and finalizes the request.
///
/// # Safety
/// `r` must be a valid request that has not sent its header.
unsafe fn send(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: caller. The unparsed URI lives in the request; the header filter makes the
    // Location absolute with the request's scheme and host, as for nginx's own redirects.
    unsafe {
        if !handler::add_response_header(
            Request::from_ngx_http_request(r),
            "Cache-Control",
            "no-store",
        ) {
            return NGX_ERROR as ngx_int_t;
        }

        let mut value: ngx_http_complex_value_t = mem::zeroed();
        value.value = (*r).unparsed_uri;
        let rc = ngx_http_send_response(
            r,
            NGX_HTTP_TEMPORARY_REDIRECT as ngx_uint_t,
            ptr::null_mut(),
            &mut value,
        );
        ngx_http_finalize_request(r, rc);
    }
    NGX_DONE as ngx_int_t
}
