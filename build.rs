//! Records where nginx-sys built nginx, so that the scripts can run the nginx binary that the
//! module was built against (`$OUT_DIR/nginx-build-dir`).

use std::{env, fs, path::Path};

fn main() {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    let build_dir = env::var("DEP_NGINX_BUILD_DIR").expect("nginx-sys exports its build dir");
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    fs::write(Path::new(&out_dir).join("nginx-build-dir"), build_dir).expect("OUT_DIR is writable");
}
