//! Records where nginx-sys built nginx, so that the scripts can run the nginx binary that the
//! module was built against (`$OUT_DIR/nginx-build-dir`), and tells the code which nginx it is
//! built for.
//!
//! cfg `ngx_table_elt_next`: `ngx_table_elt_t` has the `next` field (nginx 1.23.0 and newer;
//! Debian 12 ships 1.22). Code that fills a header element sets `next` only under this cfg.
//!
//! cfg `ngx_http_v3`: nginx is built with `ngx_http_v3_module`, so a server can listen with
//! `quic`; the configuration check of HTTP/3 servers reads the `quic` listen option only
//! under this cfg.

use std::{env, fs, path::Path};

/// The first nginx version whose `ngx_table_elt_t` has `next`.
const TABLE_ELT_NEXT: u64 = 1_023_000;

fn main() {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    println!("cargo::rustc-check-cfg=cfg(ngx_table_elt_next)");
    println!("cargo::rustc-check-cfg=cfg(ngx_http_v3)");

    let build_dir = env::var("DEP_NGINX_BUILD_DIR").expect("nginx-sys exports its build dir");
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    fs::write(Path::new(&out_dir).join("nginx-build-dir"), build_dir).expect("OUT_DIR is writable");

    let version: u64 = env::var("DEP_NGINX_VERSION_NUMBER")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("nginx-sys exports the nginx version number");
    if version >= TABLE_ELT_NEXT {
        println!("cargo::rustc-cfg=ngx_table_elt_next");
    }

    // nginx-sys exports the features of the nginx build, comma-separated.
    let features = env::var("DEP_NGINX_FEATURES").unwrap_or_default();
    if features.split(',').any(|f| f == "http_v3") {
        println!("cargo::rustc-cfg=ngx_http_v3");
    }
}
