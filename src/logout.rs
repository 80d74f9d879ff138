//! `auth_cert_logout`: ends the authentication of the connection. Its id (stamped into the
//! TLS session at the full handshake, see [`crate::session`]) is marked ended in the zone, so
//! that no session of it is resumed again on this nginx; the answer tells the browser to
//! forget its cookies, and the connection is closed (HTTP/2: GOAWAY first), so that the next
//! request needs a full handshake, with the certificate.

use auth_cert_core::cert::CertificateInfo;
use ngx::core::Status;
use ngx::ffi::{ngx_http_request_t, ngx_int_t, ngx_ssl_connection_t, NGX_LOG_INFO, SSL};
use ngx::http::{HTTPStatus, Method, Request};
use ngx::ngx_log_error;

use crate::conf::LocConf;
use crate::{access, http, session, zone};

/// The content handler of `auth_cert_logout`.
pub unsafe extern "C" fn logout_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    logout(unsafe { Request::from_ngx_http_request(r) }).0
}

fn logout(r: &mut Request) -> Status {
    // Only a POST ends an authentication: a GET may come from a link, an image or a prefetch,
    // and the client certificate goes with requests that another site's page makes.
    if r.method() != Method::POST {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "auth_cert: logout refused: method {} (only POST ends an authentication)",
            String::from_utf8_lossy(r.as_ref().method_name.as_bytes()).escape_debug()
        );
        if !http::add_response_header(r, "Allow", "POST") {
            return HTTPStatus::INTERNAL_SERVER_ERROR.into();
        }
        return HTTPStatus::NOT_ALLOWED.into();
    }
    // A form on another site can POST here too; browsers say so in Sec-Fetch-Site.
    if http::request_header(r, "Sec-Fetch-Site")
        .is_some_and(|site| site.eq_ignore_ascii_case(b"cross-site"))
    {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "auth_cert: logout refused: a cross-site request (Sec-Fetch-Site: cross-site)"
        );
        return HTTPStatus::FORBIDDEN.into();
    }
    if r.discard_request_body() != Status::NGX_OK {
        return HTTPStatus::INTERNAL_SERVER_ERROR.into();
    }
    // SAFETY: a request's connection is live while the request is; `ssl` is null without TLS.
    let ssl = unsafe { (*r.connection()).ssl.as_ref() }
        .map(|c: &ngx_ssl_connection_t| c.connection.cast::<SSL>());
    // SAFETY: the live TLS connection of the request, its handshake complete.
    let id = ssl.and_then(|ssl| unsafe { session::authentication_id(ssl) });
    let (auth_time, serial) = match access::evaluate(r) {
        Some(auth) => (
            auth.evaluation.auth_time.unwrap_or(0),
            auth.evaluation
                .cert
                .as_deref()
                .map_or_else(|| "-".to_owned(), |c| CertificateInfo::serial(c).to_owned()),
        ),
        None => (0, "-".to_owned()),
    };
    let ended = match (ssl, id) {
        (Some(ssl), Some((id, expires))) => {
            // SAFETY: as above.
            unsafe { session::forget(ssl) };
            zone::end(id, expires, auth_cert_core::zone::Kind::Logout)
        }
        _ => None,
    };
    match ended {
        Some(full) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                r.log(),
                "auth_cert: logout: authentication ended, auth_time: {}, serial: {}{}",
                auth_time,
                serial,
                if full {
                    " (zone full: the mark that expired first was dropped)"
                } else {
                    ""
                }
            );
        }
        None => {
            ngx_log_error!(
                NGX_LOG_INFO,
                r.log(),
                "auth_cert: logout: no authentication to end on this connection{}",
                if ssl.is_some() {
                    " (its session has no id)"
                } else {
                    ""
                }
            );
        }
    }
    // Content handlers finalize with what they return; the answer finalizes the request
    // itself (now, or after the HTTP/2 GOAWAY), so this handler holds one more reference.
    let req: *mut ngx_http_request_t = r.into();
    // SAFETY: a live request; its main request lives as long as it does.
    unsafe {
        let main = (*req).main;
        (*main).set_count((*main).count() + 1);
    }
    http::answer_then_close(r, send)
}

/// Sends `204`, or `303` to the configured URL, and finalizes the request.
fn send(r: &mut Request) -> Status {
    let redirect = LocConf::of(r).and_then(|c| c.settings.logout.as_ref()?.redirect.as_deref());
    if !http::add_response_header(r, "Cache-Control", "no-store")
        || !http::add_response_header(r, "Clear-Site-Data", "\"cookies\"")
    {
        return http::finalize(r, Status::NGX_ERROR);
    }
    let rc = match redirect {
        Some(url) => http::send_response(r, HTTPStatus::SEE_OTHER, None, url.as_bytes()),
        None => http::send_response(r, HTTPStatus::NO_CONTENT, None, b""),
    };
    http::finalize(r, rc)
}
