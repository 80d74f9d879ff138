//! Values the module keeps with OpenSSL objects, in their ex_data: the parsed client
//! certificate of a TLS connection (`SSL`), the session hooks of a server's `SSL_CTX`. One
//! slot type serves both.

use core::ffi::{c_int, c_long, c_void};
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicI32, Ordering};

use ngx::ffi::{
    CRYPTO_get_ex_new_index, SSL_CTX_get_ex_data, SSL_CTX_set_ex_data, SSL_get_ex_data,
    SSL_set_ex_data, CRYPTO_EX_DATA, CRYPTO_EX_INDEX_SSL, CRYPTO_EX_INDEX_SSL_CTX, SSL, SSL_CTX,
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

/// A slot holding a `T` made on first use and freed by OpenSSL with its parent object `P`.
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
        // SAFETY: plain OpenSSL call; `free_boxed::<T>` matches CRYPTO_EX_free and the slot
        // only ever holds pointers from `Box::<T>::into_raw` (`insert`).
        let index = unsafe {
            CRYPTO_get_ex_new_index(
                P::CLASS as c_int,
                0,
                ptr::null_mut(),
                None,
                None,
                Some(free_boxed::<T>),
            )
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
        // SAFETY: live parent (caller); the slot holds null or a `T` boxed by `insert`.
        unsafe { P::get(parent, index).cast::<T>().as_ref() }
    }

    /// The value kept with `parent`, made by `make` on first use; `None` when it cannot be
    /// kept.
    ///
    /// # Safety
    /// `parent` must be live; the result must not outlive it.
    pub unsafe fn get_or_make<'a>(
        &self,
        parent: *mut P,
        make: impl FnOnce() -> T,
    ) -> Option<&'a T> {
        // SAFETY: caller.
        unsafe { self.get_or_make_ptr(parent, make).map(|value| &*value) }
    }

    /// As [`Self::get_or_make`], for changing the value at configuration time.
    ///
    /// # Safety
    /// As [`Self::get_or_make`], and no other reference to the value may be live.
    pub unsafe fn get_or_make_mut<'a>(
        &self,
        parent: *mut P,
        make: impl FnOnce() -> T,
    ) -> Option<&'a mut T> {
        // SAFETY: caller.
        unsafe { self.get_or_make_ptr(parent, make).map(|value| &mut *value) }
    }

    /// # Safety
    /// `parent` must be live.
    unsafe fn get_or_make_ptr(&self, parent: *mut P, make: impl FnOnce() -> T) -> Option<*mut T> {
        let index = self.index()?;
        // SAFETY: live parent (caller); the slot holds null or a boxed `T`.
        let kept = unsafe { P::get(parent, index) }.cast::<T>();
        if !kept.is_null() {
            return Some(kept);
        }
        let value = Box::into_raw(Box::new(make()));
        // SAFETY: on failure the box is still ours to free; on success OpenSSL frees it
        // through `free_boxed` with the parent.
        unsafe {
            if !P::set(parent, index, value.cast()) {
                drop(Box::from_raw(value));
                return None;
            }
        }
        Some(value)
    }
}

/// The `CRYPTO_EX_free` of slots that hold a `Box<T>`.
unsafe extern "C" fn free_boxed<T>(
    _parent: *mut c_void,
    data: *mut c_void,
    _ad: *mut CRYPTO_EX_DATA,
    _index: c_int,
    _argl: c_long,
    _argp: *mut c_void,
) {
    if !data.is_null() {
        // SAFETY: registered only for slots that hold pointers from `Box::<T>::into_raw`.
        drop(unsafe { Box::from_raw(data.cast::<T>()) });
    }
}
