//! The small layer over the `ngx` crate that the handlers share: answering a request (also as
//! the last one of its connection), reading a request header, adding a response header,
//! strings in a request's pool, variable values.

use core::ffi::c_void;
use core::ptr;

use ngx::core::Status;
use ngx::ffi::{
    add_to_ngx_table, ngx_conf_t, ngx_delete_posted_event, ngx_event_t, ngx_http_add_variable,
    ngx_http_complex_value_t, ngx_http_finalize_request, ngx_http_request_t,
    ngx_http_run_posted_requests, ngx_http_send_response, ngx_int_t, ngx_list_push, ngx_pcalloc,
    ngx_pool_cleanup_add, ngx_post_event, ngx_posted_events, ngx_str_t, ngx_table_elt_t,
    ngx_uint_t, ngx_variable_value_t, NGX_HTTP_VAR_NOCACHEABLE,
};
use ngx::http::{HTTPStatus, Request};

/// A variable's getter, as nginx calls it.
pub type VariableGetter =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_variable_value_t, usize) -> ngx_int_t;

/// `bytes` copied into the request's pool, so that they outlive what produced them.
pub fn copy_to_pool(r: &Request, bytes: &[u8]) -> Option<ngx_str_t> {
    // SAFETY: the request's pool is live while the request is; the copy lives in it.
    unsafe { ngx_str_t::from_bytes(r.pool().as_ptr(), bytes) }
}

/// Sends a whole answer: `status`, the body (or, for a redirect, the `Location`) `value` and
/// its `content_type`. Returns what `ngx_http_send_response` returns, for a content handler
/// to return or for [`finalize`].
pub fn send_response(
    r: &mut Request,
    status: HTTPStatus,
    content_type: Option<&'static str>,
    value: &[u8],
) -> Status {
    let Some(value) = copy_to_pool(r, value) else {
        return Status::NGX_ERROR;
    };
    let mut content_type = content_type.map(|t| ngx_str_t {
        len: t.len(),
        data: t.as_ptr().cast_mut(),
    });
    // SAFETY: an all-zero complex value with a value and no lengths is a plain string.
    let mut cv: ngx_http_complex_value_t = unsafe { core::mem::zeroed() };
    cv.value = value;
    let r: *mut ngx_http_request_t = r.into();
    // SAFETY: a live request that has not sent its header; nginx only reads the content type
    // and the value, which outlive the call (static, and the request's pool).
    let rc = unsafe {
        ngx_http_send_response(
            r,
            ngx_uint_t::from(status),
            content_type.as_mut().map_or(ptr::null_mut(), ptr::from_mut),
            &raw mut cv,
        )
    };
    Status(rc)
}

/// Sets the HTTP/1.x status line of the response, for a code nginx has no reason phrase for
/// (it would send `425` with none). HTTP/2 sends the code alone.
pub fn set_status_line(r: &mut Request, line: &'static str) {
    let r: *mut ngx_http_request_t = r.into();
    // SAFETY: a live request that has not sent its header; nginx only reads the line, static.
    unsafe {
        (*r).headers_out.status_line = ngx_str_t {
            len: line.len(),
            data: line.as_ptr().cast_mut(),
        };
    }
}

/// Finalizes a request answered from a phase handler, which then returns `NGX_DONE`.
pub fn finalize(r: &mut Request, rc: Status) -> Status {
    let r: *mut ngx_http_request_t = r.into();
    // SAFETY: a live request, finalized once by its phase handler.
    unsafe { ngx_http_finalize_request(r, rc.0) };
    Status::NGX_DONE
}

/// An answer of a phase handler: a status for nginx, or `NGX_DONE` when it finalized the
/// request itself (see [`finalize`]).
pub type Answer = fn(&mut Request) -> Status;

/// Answers `r` with `answer` from a phase handler, as the last request of its connection, so
/// that the client's next request makes a new TLS handshake; returns what the phase handler
/// returns.
///
/// HTTP/1.x: `Connection: close`, answered now. HTTP/2: the whole connection is closed the way
/// nginx closes it on a graceful shutdown: its read handler, seeing `close`, sends GOAWAY, lets
/// the streams in flight finish, then closes. The GOAWAY must reach the client before the
/// answer, or a client may send its next request on the same connection first; the answer is
/// therefore made from a posted event, after the GOAWAY (the read handler cannot run from
/// within the request's own processing, which it may have called).
pub fn answer_then_close(r: &mut Request, answer: Answer) -> Status {
    if r.as_ref().stream.is_null() {
        r.as_mut().set_keepalive(0);
        return answer(r);
    }
    let r: *mut ngx_http_request_t = r.into();
    // SAFETY: a live request. HTTP/2: the answer waits for a posted event, queued behind
    // nothing of this request; the event lives in the request's pool.
    unsafe {
        let deferred = ngx_pcalloc((*r).pool, size_of::<Deferred>()).cast::<Deferred>();
        let cleanup = ngx_pool_cleanup_add((*r).pool, 0);
        let Some((deferred, cleanup)) = deferred.as_mut().zip(cleanup.as_mut()) else {
            return Status::NGX_ERROR;
        };
        deferred.answer = Some(answer);
        let ev = &mut deferred.ev;
        ev.handler = Some(answer_h2);
        ev.data = r.cast();
        ev.log = (*(*r).connection).log;
        // Should the request go away first, its event must leave the posted queue with it.
        cleanup.handler = Some(forget_event);
        cleanup.data = ptr::from_mut(ev).cast();
        ngx_post_event(ev, ptr::addr_of_mut!(ngx_posted_events));
    }
    Status::NGX_DONE
}

/// The posted event of [`answer_then_close`] and its answer (`ev` first: the event handler
/// finds the answer from the event).
#[repr(C)]
struct Deferred {
    ev: ngx_event_t,
    answer: Option<Answer>,
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

/// The posted HTTP/2 answer: GOAWAY on the connection first, then the answer.
unsafe extern "C" fn answer_h2(ev: *mut ngx_event_t) {
    // SAFETY: the event is the first field of its `Deferred`, and its data is its request,
    // alive as long as the event is posted (see `forget_event`); the stream and its
    // connection live as long as the request.
    unsafe {
        let answer = (*ev.cast::<Deferred>()).answer;
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
        let rc = answer.map_or(Status::NGX_ERROR, |answer| {
            answer(Request::from_ngx_http_request(r))
        });
        if rc != Status::NGX_DONE {
            ngx_http_finalize_request(r, rc.0);
        }
        ngx_http_run_posted_requests(fc);
    }
}

/// Adds a response header; `false` when memory runs out. Not the crate's
/// `Request::add_header_out`: that one leaves `next` (nginx 1.23+) uninitialised, which the
/// header filter follows for headers of one name.
pub fn add_response_header(r: &mut Request, key: &str, value: &str) -> bool {
    let r: *mut ngx_http_request_t = r.into();
    // SAFETY: a live request; a pushed list element is ours to fill, from its pool.
    unsafe {
        let header = ngx_list_push(&raw mut (*r).headers_out.headers).cast::<ngx_table_elt_t>();
        if add_to_ngx_table(header, (*r).pool, key, value).is_none() {
            return false;
        }
        #[cfg(ngx_table_elt_next)]
        {
            (*header).next = ptr::null_mut();
        }
    }
    true
}

/// The value of the request's first `name` header (names compare case-insensitively).
pub fn request_header<'a>(r: &'a Request, name: &str) -> Option<&'a [u8]> {
    r.headers_in_iterator()
        .find(|(key, _)| key.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, value)| value.as_bytes())
}

/// Sets a variable's value to `value`, which must live as long as the request.
pub fn set_variable(v: &mut ngx_variable_value_t, value: &[u8]) {
    v.set_len(u32::try_from(value.len()).unwrap_or(0));
    v.set_valid(1);
    v.set_no_cacheable(0);
    v.set_not_found(0);
    v.data = value.as_ptr().cast_mut();
}

/// Registers variable `$name` with its getter; called from preconfiguration. `false` when
/// nginx refused (memory, or a conflicting definition: nginx has logged why).
///
/// # Safety
/// `cf` must be the configuration being parsed.
pub unsafe fn add_variable(
    cf: *mut ngx_conf_t,
    name: &'static str,
    get: VariableGetter,
    data: usize,
) -> bool {
    let mut name = ngx_str_t {
        len: name.len(),
        data: name.as_ptr().cast_mut(),
    };
    // SAFETY: caller: the configuration being parsed; nginx copies the name into its pool.
    let var =
        unsafe { ngx_http_add_variable(cf, &raw mut name, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t) };
    // SAFETY: non-null results point to the variable nginx keeps for the name.
    let Some(var) = (unsafe { var.as_mut() }) else {
        return false;
    };
    var.get_handler = Some(get);
    var.data = data;
    true
}

/// A status for nginx from an HTTP status code.
pub fn status(code: u16) -> Status {
    Status(code as ngx_int_t)
}
