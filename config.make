# Appends to objs/Makefile the rule that builds the Rust part of the module with cargo.
#
# make cannot see the Rust sources and their dependencies, so the rule always runs cargo, which
# rebuilds only what changed. nginx-sys reads this tree's configuration through NGINX_BUILD_DIR
# and NGINX_SOURCE_DIR. Without default features: nginx generates the module table itself, and
# no bundled nginx source is needed.

ngx_auth_cert_build_dir=$(cd "$NGX_OBJS" && pwd)
ngx_auth_cert_source_dir=$(pwd)
ngx_auth_cert_manifest=$(cd "$ngx_addon_dir" && pwd)/Cargo.toml

cat << END                                                    >> $NGX_MAKEFILE

$ngx_auth_cert_lib: ngx_http_auth_cert_module_always

ngx_http_auth_cert_module_always:
	NGINX_BUILD_DIR="$ngx_auth_cert_build_dir" \\
	NGINX_SOURCE_DIR="$ngx_auth_cert_source_dir" \\
	${NGX_CARGO:-cargo} rustc --lib --release --locked \\
		--manifest-path "$ngx_auth_cert_manifest" \\
		--target-dir "$ngx_auth_cert_build_dir/ngx_http_auth_cert_module" \\
		--no-default-features --crate-type staticlib

$NGX_OBJS/ngx_http_auth_cert_module$ngx_modext: $ngx_auth_cert_lib

.PHONY: ngx_http_auth_cert_module_always

END
