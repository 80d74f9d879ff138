//! Values the module keeps with OpenSSL objects, in their ex_data: the parsed client
//! certificate of a TLS connection (`SSL`), the session hooks of a server's `SSL_CTX`. One
//! slot type serves both.
//!
//! The slots are registered with no OpenSSL callbacks at all. OpenSSL calls a slot's free
//! callback for every object of its class for the rest of the process, even when the slot is
//! empty; a callback in this module would be called after nginx unloads the module (a reload
//! with a configuration without its `load_module`) and crash every worker and the master.
//! Each value is therefore freed by a cleanup of the nginx pool that lives as long as its
//! object: the pool of the connection that owns the `SSL`, or the configuration pool for an
//! `SSL_CTX`, whose cleanup runs before the module is unloaded.

use core::ffi::{c_int, c_void};
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicI32, Ordering};

use ngx::ffi::{
    ngx_connection_t, ngx_pool_cleanup_add, ngx_pool_t, ngx_ssl_connection_index,
    CRYPTO_get_ex_new_index, SSL_CTX_get_ex_data, SSL_CTX_set_ex_data, SSL_get_ex_data,
    SSL_set_ex_data, CRYPTO_EX_INDEX_SSL, CRYPTO_EX_INDEX_SSL_CTX, SSL, SSL_CTX,
};

/// An OpenSSL object with ex_data.
pub trait Parent {
    /// Its `CRYPTO_EX_INDEX_*` class.
    const CLASS: u32;

    /// # Safety
    /// `parent` must be a live object of this type and `index` a slot of its class.
    unsafe fn get(parent: *const Self, index: c_int) -> *mut c_void;

    /// # Safety
    /// As [`Parent::get`].
    unsafe fn set(parent: *mut Self, index: c_int, data: *mut c_void) -> bool;
}

impl Parent for SSL {
    const CLASS: u32 = CRYPTO_EX_INDEX_SSL;

    unsafe fn get(parent: *const Self, index: c_int) -> *mut c_void {
        // SAFETY: caller.
        unsafe { SSL_get_ex_data(parent, index) }
    }

    unsafe fn set(parent: *mut Self, index: c_int, data: *mut c_void) -> bool {
        // SAFETY: caller.
        unsafe { SSL_set_ex_data(parent, index, data) == 1 }
    }
}

impl Parent for SSL_CTX {
    const CLASS: u32 = CRYPTO_EX_INDEX_SSL_CTX;

    unsafe fn get(parent: *const Self, index: c_int) -> *mut c_void {
        // SAFETY: caller.
        unsafe { SSL_CTX_get_ex_data(parent, index) }
    }

    unsafe fn set(parent: *mut Self, index: c_int, data: *mut c_void) -> bool {
        // SAFETY: caller.
        unsafe { SSL_CTX_set_ex_data(parent, index, data) == 1 }
    }
}

/// A slot holding a `T` made on first use and freed with the nginx pool given for it.
pub struct Slot<P, T> {
    index: AtomicI32,
    value: PhantomData<fn(*const P) -> T>,
}

impl<P: Parent, T> Slot<P, T> {
    pub const fn new() -> Self {
        Slot {
            index: AtomicI32::new(-1),
            value: PhantomData,
        }
    }

    /// Reserves the slot; called at configuration time, before workers start.
    pub fn init(&self) -> bool {
        self.index().is_some()
    }

    fn index(&self) -> Option<c_int> {
        let index = self.index.load(Ordering::Relaxed);
        if index >= 0 {
            return Some(index);
        }
        // SAFETY: plain OpenSSL call. No callbacks (see the module documentation): the
        // values are freed by pool cleanups.
        let index = unsafe {
            CRYPTO_get_ex_new_index(P::CLASS as c_int, 0, ptr::null_mut(), None, None, None)
        };
        self.index.store(index, Ordering::Relaxed);
        (index >= 0).then_some(index)
    }

    /// The value kept with `parent`, if any.
    ///
    /// # Safety
    /// `parent` must be live; the result must not outlive it.
    pub unsafe fn get<'a>(&self, parent: *const P) -> Option<&'a T> {
        let index = self.index.load(Ordering::Relaxed);
        if index < 0 || parent.is_null() {
            return None;
        }
        // SAFETY: live parent (caller); the slot holds null or a `T` boxed by
        // `get_or_make_ptr`, freed only with the pool that outlives the parent's use.
        unsafe { P::get(parent, index).cast::<T>().as_ref() }
    }

    /// The value kept with `parent`, made by `make` on first use and freed when `pool` is
    /// destroyed; `None` when it cannot be kept.
    ///
    /// # Safety
    /// `parent` must be live and `pool` a live pool that is destroyed only when `parent` is no
    /// longer used (nor read through this slot).
    unsafe fn get_or_make_ptr(
        &self,
        parent: *mut P,
        pool: *mut ngx_pool_t,
        make: impl FnOnce() -> T,
    ) -> Option<*mut T> {
        let index = self.index()?;
        // SAFETY: live parent (caller); the slot holds null or a boxed `T`.
        let kept = unsafe { P::get(parent, index) }.cast::<T>();
        if !kept.is_null() {
            return Some(kept);
        }
        if pool.is_null() {
            return None;
        }
        // SAFETY: live pool (caller); a cleanup without a handler is skipped by nginx.
        let cleanup = unsafe { ngx_pool_cleanup_add(pool, 0).as_mut() }?;
        let value = Box::into_raw(Box::new(make()));
        // SAFETY: live parent (caller); on failure the box is still ours to free, on success
        // the pool's cleanup frees it, once, when the pool is destroyed.
        unsafe {
            if !P::set(parent, index, value.cast()) {
                drop(Box::from_raw(value));
                return None;
            }
        }
        cleanup.handler = Some(drop_boxed::<T>);
        cleanup.data = value.cast();
        Some(value)
    }
}

impl<T> Slot<SSL, T> {
    /// The value kept with the TLS connection `ssl`, made by `make` on first use and freed
    /// with the connection; `None` when it cannot be kept.
    ///
    /// # Safety
    /// `ssl` must be the live `SSL` object of an nginx connection; the result must not be used
    /// after the connection is closed.
    pub unsafe fn get_or_make<'a>(&self, ssl: *mut SSL, make: impl FnOnce() -> T) -> Option<&'a T> {
        // SAFETY: caller. The pool is the one of the connection that owns `ssl` (not an
        // HTTP/2 stream's), destroyed after `ssl` is freed when the connection closes.
        unsafe {
            let pool = connection(ssl).as_ref().map_or(ptr::null_mut(), |c| c.pool);
            self.get_or_make_ptr(ssl, pool, make).map(|value| &*value)
        }
    }
}

impl<T> Slot<SSL_CTX, T> {
    /// The value kept with `ctx`, made by `make` on first use and freed with `pool`; for
    /// changing the value at configuration time.
    ///
    /// # Safety
    /// `ctx` must be a live context of the configuration being read, `pool` that
    /// configuration's pool (`cf->pool`), and no other reference to the value may be live.
    pub unsafe fn get_or_make_mut<'a>(
        &self,
        ctx: *mut SSL_CTX,
        pool: *mut ngx_pool_t,
        make: impl FnOnce() -> T,
    ) -> Option<&'a mut T> {
        // SAFETY: caller; nginx frees the configuration's contexts with the same pool.
        unsafe {
            self.get_or_make_ptr(ctx, pool, make)
                .map(|value| &mut *value)
        }
    }
}

/// The nginx connection that owns `ssl` (null if none), as nginx's `ngx_ssl_get_connection`.
///
/// # Safety
/// `ssl` must be a live `SSL` object.
pub unsafe fn connection(ssl: *const SSL) -> *mut ngx_connection_t {
    // SAFETY: nginx stores the connection in every SSL it creates, at this index.
    unsafe { SSL_get_ex_data(ssl, ngx_ssl_connection_index).cast() }
}

/// The pool cleanup of slots that hold a `Box<T>`.
unsafe extern "C" fn drop_boxed<T>(data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: set only with a pointer from `Box::<T>::into_raw` (`get_or_make_ptr`).
        drop(unsafe { Box::from_raw(data.cast::<T>()) });
    }
}
