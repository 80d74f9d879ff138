//! The small layer over the `ngx` crate that the handlers share: answering a request, adding a
//! response header, strings in a request's pool, variable values.

use core::ptr;

use ngx::core::Status;
use ngx::ffi::{
    add_to_ngx_table, ngx_conf_t, ngx_http_add_variable, ngx_http_complex_value_t,
    ngx_http_finalize_request, ngx_http_request_t, ngx_http_send_response, ngx_int_t,
    ngx_list_push, ngx_str_t, ngx_table_elt_t, ngx_uint_t, ngx_variable_value_t,
    NGX_HTTP_VAR_NOCACHEABLE,
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
