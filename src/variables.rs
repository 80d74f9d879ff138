//! `$auth_cert_*` variables.

use auth_cert_core::age::Decimal;
use auth_cert_core::cert::CertificateInfo;
use auth_cert_core::forwarded::rfc9440;
use ngx::core::Status;
use ngx::ffi::{ngx_conf_t, ngx_http_request_t, ngx_int_t, ngx_variable_value_t};
use ngx::http::Request;

use crate::access::{self, RequestAuth};
use crate::http;

/// Reads one variable's value out of a request's evaluation.
type Getter = fn(&RequestAuth) -> &str;

/// The variables, by name; the index is the `data` of the getter.
const VARIABLES: [(&str, Getter); 14] = [
    ("auth_cert_status", |a| match &a.evaluation.outcome {
        Ok(_) => "ok",
        Err(reason) => reason.status().as_str(),
    }),
    ("auth_cert_reason", |a| match &a.evaluation.outcome {
        Ok(_) => "",
        Err(reason) => reason.as_str(),
    }),
    ("auth_cert_identity", |a| {
        a.evaluation.outcome.as_deref().unwrap_or("")
    }),
    ("auth_cert_subject", |a| {
        trusted(a).map_or("", CertificateInfo::subject)
    }),
    ("auth_cert_issuer", |a| {
        trusted(a).map_or("", CertificateInfo::issuer)
    }),
    ("auth_cert_serial", |a| {
        trusted(a).map_or("", CertificateInfo::serial)
    }),
    ("auth_cert_fingerprint", |a| {
        trusted(a).map_or("", CertificateInfo::fingerprint_hex)
    }),
    ("auth_cert_email", |a| {
        trusted(a).and_then(|c| c.email()).unwrap_or("")
    }),
    ("auth_cert_upn", |a| {
        trusted(a).and_then(|c| c.upn()).unwrap_or("")
    }),
    ("auth_cert_not_after", |a| {
        a.not_after_text
            .get_or_init(|| decimal(trusted(a).map(|c| c.not_after)))
            .as_str()
    }),
    ("auth_cert_source", |a| {
        a.evaluation.source.map_or("", |s| s.as_str())
    }),
    ("auth_cert_auth_time", |a| {
        a.auth_time_text
            .get_or_init(|| decimal(a.evaluation.auth_time))
            .as_str()
    }),
    ("auth_cert_age", |a| {
        a.age_text
            .get_or_init(|| decimal(a.evaluation.age))
            .as_str()
    }),
    // The certificate as an RFC 9440 `Client-Cert` value, to hand it to a backend: only for
    // a request that is allowed with it.
    ("auth_cert_client_cert", |a| match &a.evaluation.outcome {
        Ok(_) => a
            .client_cert_text
            .get_or_init(|| trusted(a).map_or_else(String::new, |c| rfc9440::encode(c.der())))
            .as_str(),
        Err(_) => "",
    }),
];

/// A number for a variable; empty when unknown.
fn decimal(value: Option<i64>) -> Decimal {
    value.map(Decimal::new).unwrap_or_default()
}

/// The certificate's facts, when its chain verified.
fn trusted(auth: &RequestAuth) -> Option<&CertificateInfo> {
    auth.evaluation.trusted_cert()
}

/// Registers the variables; called from preconfiguration.
///
/// # Safety
/// `cf` must be the configuration being parsed.
pub unsafe fn add(cf: *mut ngx_conf_t) -> bool {
    VARIABLES
        .iter()
        .enumerate()
        // SAFETY: caller.
        .all(|(index, (name, _))| unsafe { http::add_variable(cf, name, get, index) })
}

unsafe extern "C" fn get(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls variable getters with a valid request and value slot.
    let (request, v) = unsafe { (Request::from_ngx_http_request(r), &mut *v) };
    let (Some(auth), Some((_, value_of))) = (access::evaluate(request), VARIABLES.get(data)) else {
        return Status::NGX_ERROR.0;
    };
    // The value lives in the request's evaluation, which the request pool keeps alive.
    http::set_variable(v, value_of(auth).as_bytes());
    Status::NGX_OK.0
}
