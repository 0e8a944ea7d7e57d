//! Handles to heap objects: the typed [`Gc`] and the type-erased [`GcAny`].
//!
//! A handle is just the address of a cell; it owns nothing and dereferencing it always goes
//! through the heap, which checks the cell's block belongs to that heap and the cell's header
//! names the expected type. Those two checks are what keep the safe API memory-safe when a
//! handle outlives its object (see "Why the safe API is sound" in the crate docs).

use std::any::TypeId;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::block::{owner_of, HeapId};
use crate::cell::{payload, Header, VTable};
use crate::heap::Heap;
use crate::trace::Trace;

/// A handle to a heap object of type `T`: `Copy`, pointer-sized, compared and hashed by address.
/// Transparent: compiled code reads handles stored in objects as plain cell addresses.
#[repr(transparent)]
pub struct Gc<T: Trace> {
    cell: NonNull<Header>,
    _type: PhantomData<fn() -> T>,
}

// SAFETY: a `Gc` is an address. Every access to the object goes through `&Heap`/`&mut Heap`
// (which is `Send` but not `Sync`) and is checked against the heap's identity, so sending or
// sharing the bare address between threads grants no access by itself.
unsafe impl<T: Trace> Send for Gc<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Trace> Sync for Gc<T> {}

impl<T: Trace> Gc<T> {
    /// Wraps a freshly initialised cell holding a `T`.
    pub(crate) fn from_cell(cell: NonNull<Header>) -> Gc<T> {
        Gc {
            cell,
            _type: PhantomData,
        }
    }

    /// The object, borrowed for as long as the heap is.
    ///
    /// Panics with "kiln-gc: stale or mistyped Gc handle" if the object was collected (its cell
    /// is free or now holds an object of another type), or if `heap` did not allocate it.
    #[inline]
    #[track_caller]
    pub fn get(self, heap: &Heap) -> &T {
        let cell = self.checked_cell(heap.id());
        // SAFETY: `checked_cell` proved the cell is an allocated `T` of `heap`. `&mut T`s exist
        // only through `get_mut(&mut Heap)` and objects are freed only by `collect(&mut Heap)`,
        // so while `heap` is borrowed shared the object stays valid and unmutated.
        unsafe { payload::<T>(cell).as_ref() }
    }

    /// The object, borrowed mutably for as long as the heap is. Panics like [`Gc::get`].
    #[inline]
    #[track_caller]
    pub fn get_mut(self, heap: &mut Heap) -> &mut T {
        let cell = self.checked_cell(heap.id());
        // SAFETY: as in `get`; the exclusive heap borrow also rules out every other reference
        // to the object for the returned lifetime.
        unsafe { payload::<T>(cell).as_mut() }
    }

    /// Whether two handles point to the same object.
    pub fn ptr_eq(a: Gc<T>, b: Gc<T>) -> bool {
        a.cell == b.cell
    }

    /// The object's address: its identity, for hashing and for displaying ids.
    pub fn addr(self) -> usize {
        self.cell.addr().get()
    }

    /// The type-erased handle.
    pub fn erase(self) -> GcAny {
        GcAny { cell: self.cell }
    }

    #[inline]
    #[track_caller]
    fn checked_cell(self, heap: HeapId) -> NonNull<Header> {
        let cell = self.erase().cell_in(heap);
        // SAFETY: `cell_in` checked the cell belongs to this heap; handles only point at cells
        // handed out by `alloc`, whose headers are initialised.
        let vtable = unsafe { (*cell.as_ptr()).vtable };
        // The same vtable is the same type (vtables of different types differ in their
        // type id, so none can stand for another): one compare of addresses, where the
        // type ids are two 64-bit compares and a load. A type's vtable may have several
        // addresses (one per codegen unit), so a different address compares the ids.
        if !std::ptr::eq(vtable, VTable::of::<T>()) && vtable.type_id != TypeId::of::<T>() {
            stale_handle();
        }
        cell
    }
}

impl<T: Trace> Clone for Gc<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Trace> Copy for Gc<T> {}

impl<T: Trace> PartialEq for Gc<T> {
    fn eq(&self, other: &Self) -> bool {
        Gc::ptr_eq(*self, *other)
    }
}

impl<T: Trace> Eq for Gc<T> {}

impl<T: Trace> PartialOrd for Gc<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Trace> Ord for Gc<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.cell.cmp(&other.cell)
    }
}

impl<T: Trace> Hash for Gc<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.cell.hash(state);
    }
}

impl<T: Trace> fmt::Debug for Gc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gc({:#x})", self.addr())
    }
}

/// A type-erased handle, for liveness queries, verification and root lists.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct GcAny {
    cell: NonNull<Header>,
}

// SAFETY: as for `Gc`: an address that grants no access without the owning heap.
unsafe impl Send for GcAny {}
// SAFETY: as for `Gc`.
unsafe impl Sync for GcAny {}

impl GcAny {
    /// The object's address (the same as [`Gc::addr`] of the typed handle).
    pub fn addr(self) -> usize {
        self.cell.addr().get()
    }

    /// The typed handle, if the object is a `T`. `None` also for a collected object.
    /// Panics if `heap` did not allocate the object.
    #[track_caller]
    pub fn downcast<T: Trace>(self, heap: &Heap) -> Option<Gc<T>> {
        let cell = self.cell_in(heap.id());
        // SAFETY: `cell_in` checked the cell belongs to `heap`; its header is initialised.
        let type_id = unsafe { (*cell.as_ptr()).vtable.type_id };
        (type_id == TypeId::of::<T>()).then(|| Gc::from_cell(cell))
    }

    pub(crate) fn cell(self) -> NonNull<Header> {
        self.cell
    }

    /// The cell, after checking its block belongs to heap `heap`.
    #[inline]
    #[track_caller]
    pub(crate) fn cell_in(self, heap: HeapId) -> NonNull<Header> {
        // SAFETY: a handle points into a block of the heap that allocated it, and blocks live
        // as long as their heap. The one case this cannot check is a handle used after its heap
        // was dropped: the crate docs forbid it ("Why the safe API is sound").
        if unsafe { owner_of(self.cell) } != heap {
            foreign_handle();
        }
        self.cell
    }
}

/// The panic for a handle whose object was collected (or that names the wrong type).
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn stale_handle() -> ! {
    panic!("kiln-gc: stale or mistyped Gc handle")
}

#[cold]
#[inline(never)]
#[track_caller]
fn foreign_handle() -> ! {
    panic!("kiln-gc: stale or mistyped Gc handle (used with a heap that did not allocate it)")
}
