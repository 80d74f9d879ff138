//! `auth_cert_handshake require`: the alert of a refused handshake is sent a moment later.
//!
//! The client finishes its side of the handshake before the server has checked its
//! certificate (always in TLS 1.3; in TLS 1.2 with False Start), and sends its first request
//! right away. An alert that arrives before that request is sent reaches a browser at the
//! moment it hands the connection to the request: Chromium then reports
//! `ERR_SOCKET_NOT_CONNECTED` and keeps its cached "no certificate" choice. An alert that
//! arrives after the request is reported as `ERR_BAD_SSL_CLIENT_AUTH_CERT`, and Chromium
//! forgets the choice and asks for the card again.
//!
//! So when such a handshake is about to fail, OpenSSL writes its alert into memory instead of
//! the socket, and a duplicate of the socket, with its own nginx connection, keeps the TCP
//! connection open after nginx has closed its own: it reads (and discards) what the client
//! sends for [`WAIT_MS`], then sends the alert, ends its side of the connection, and reads
//! until the client closes or [`DRAIN_MS`] pass, so that closing does not reset the connection
//! before the client has read the alert.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;

use ngx::ffi::{
    close, dup, ngx_add_timer, ngx_close_connection, ngx_connection_t, ngx_cycle,
    ngx_event_actions, ngx_event_t, ngx_get_connection, ngx_handle_read_event, ngx_msec_t, recv,
    send, shutdown, BIO_ctrl, BIO_free, BIO_new, BIO_s_mem, BIO_up_ref, SSL_get_rbio, SSL_get_wbio,
    SSL_set0_wbio, BIO, BIO_CTRL_INFO, MSG_DONTWAIT, SHUT_WR, SSL,
};

use crate::ex_data;

/// How long the alert waits for the client's request.
const WAIT_MS: ngx_msec_t = 200;
/// How long the connection is read, after the alert, for the client to close it.
const DRAIN_MS: ngx_msec_t = 1000;

/// Holds the alert of the handshake of `ssl`, which is about to fail: see the module
/// documentation. Without the resources for it, the alert goes out at once, as without this.
///
/// # Safety
/// `ssl` must be a live `SSL` of an nginx connection, in its handshake, called from one of
/// its callbacks before OpenSSL sends the alert.
pub unsafe fn hold(ssl: *mut SSL) {
    // SAFETY: caller; nginx made the connection's socket BIO, both its read and write BIO.
    unsafe {
        if SSL_get_wbio(ssl) != SSL_get_rbio(ssl) {
            // already held, or not nginx's socket
            return;
        }
        let Some(c) = ex_data::connection(ssl).as_ref() else {
            return;
        };
        let fd = dup(c.fd);
        if fd == -1 {
            return;
        }
        // epoll keeps a registration while any descriptor of the socket is open: nginx, which
        // closes its descriptor without deleting the registration, must not get events of this
        // socket for a connection it has freed. Without that, the alert goes out at once.
        let del_conn = ngx_event_actions.del_conn;
        let deleted = match del_conn {
            Some(del_conn) => del_conn(ptr::from_ref(c).cast_mut(), 0) == 0,
            None => false,
        };
        if !deleted {
            close(fd);
            return;
        }
        let log = (*ngx_cycle).log;
        let Some(lc) = ngx_get_connection(fd, log).as_mut() else {
            close(fd);
            return;
        };
        let mem = BIO_new(BIO_s_mem());
        if mem.is_null() || BIO_up_ref(mem) != 1 {
            if !mem.is_null() {
                BIO_free(mem);
            }
            ngx_close_connection(lc);
            return;
        }
        // The SSL owns one reference to `mem` (and frees its socket BIO's write reference),
        // the waiting connection the other.
        SSL_set0_wbio(ssl, mem);
        lc.data = mem.cast();
        for ev in [lc.read, lc.write] {
            (*ev).log = log;
            (*ev).handler = Some(on_event);
        }
        // (Not cancelable: a worker that exits gracefully, on a reload, waits the moment it
        // takes, rather than leave the socket open.)
        ngx_add_timer(lc.read, WAIT_MS);
        if ngx_handle_read_event(lc.read, 0) != 0 {
            // Without read events the timer still sends the alert.
        }
    }
}

/// The waiting connection's events: reads and discards, sends the alert once its time has
/// come, then drains until the client closes.
unsafe extern "C" fn on_event(ev: *mut ngx_event_t) {
    // SAFETY: the events of a connection made by `hold`, whose data is the alert's memory BIO
    // until the alert is sent, then null.
    unsafe {
        let lc = (*ev).data.cast::<ngx_connection_t>();
        let mem = (*lc).data.cast::<BIO>();
        if (*ev).write() != 0 {
            return;
        }
        if (*ev).timedout() != 0 {
            (*ev).set_timedout(0);
            if mem.is_null() {
                close_waiting(lc);
                return;
            }
            send_alert(lc, mem);
            ngx_add_timer(ev, DRAIN_MS);
        }
        // Read what there is: the client's request, or the end of the connection.
        let mut buf = [0u8; 4096];
        loop {
            let n = recv(
                (*lc).fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                MSG_DONTWAIT as c_int,
            );
            if n > 0 {
                continue;
            }
            if n == 0 || *ngx::ffi::__errno_location() != ngx::ffi::EAGAIN as c_int {
                // The client closed or reset the connection: the alert is no use any more.
                close_waiting(lc);
                return;
            }
            break;
        }
        (*ev).set_ready(0);
        if ngx_handle_read_event(ev, 0) != 0 {
            close_waiting(lc);
        }
    }
}

/// Sends the held alert and ends the sending side of the connection.
///
/// # Safety
/// `lc` must be a connection made by `hold`, `mem` its memory BIO.
unsafe fn send_alert(lc: *mut ngx_connection_t, mem: *mut BIO) {
    // SAFETY: caller; the memory BIO's data stays valid until it is freed below.
    unsafe {
        let mut data: *mut c_char = ptr::null_mut();
        let len = BIO_ctrl(
            mem,
            BIO_CTRL_INFO as c_int,
            0,
            ptr::from_mut(&mut data).cast(),
        );
        if let (Ok(len), false) = (usize::try_from(len), data.is_null()) {
            // A few dozen bytes into an idle socket: sent whole, or the client is gone.
            send((*lc).fd, data.cast::<c_void>(), len, MSG_DONTWAIT as c_int);
        }
        shutdown((*lc).fd, SHUT_WR as c_int);
        BIO_free(mem);
        (*lc).data = ptr::null_mut();
    }
}

/// Closes a connection made by `hold`, with its memory BIO if the alert was not sent.
///
/// # Safety
/// `lc` must be a connection made by `hold`, not closed yet.
unsafe fn close_waiting(lc: *mut ngx_connection_t) {
    // SAFETY: caller.
    unsafe {
        let mem = (*lc).data.cast::<BIO>();
        if !mem.is_null() {
            BIO_free(mem);
            (*lc).data = ptr::null_mut();
        }
        ngx_close_connection(lc);
    }
}
