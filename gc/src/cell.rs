//! Object cells: the 16-byte header in front of every object, the per-type vtable it points to,
//! and the mapping from a Rust type to the size class of its cell.
//!
//! A cell is `[Header | payload]`. The header's vtable is how the type-erased collector traces,
//! drops and measures an object, and it is also the cell's state: a freed cell points to the
//! vtable of the private type [`Freed`] and keeps its free-list link in its payload.

use std::any::TypeId;
use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::trace::{Liveness, Trace, Tracer};

/// Size of [`Header`]; the payload starts this many bytes into a cell.
pub(crate) const HEADER_SIZE: usize = 16;
/// Cell sizes, and so object alignments, are multiples of this.
pub(crate) const CELL_GRANULE: usize = 16;
/// The smallest cell: a freed cell stores its free-list link in the payload, so every payload
/// has room for a pointer even when the object is a zero-sized type.
pub(crate) const MIN_CELL: usize = 32;
/// The largest cell. The VM's objects are small; anything bigger keeps its bulk in an owned
/// buffer (reported through [`Trace::external_bytes`]).
pub(crate) const MAX_CELL: usize = 512;
/// Cell sizes run from [`MIN_CELL`] to [`MAX_CELL`] in steps of [`CELL_GRANULE`].
pub(crate) const NUM_CLASSES: usize = (MAX_CELL - MIN_CELL) / CELL_GRANULE + 1;

/// The header in front of every object.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub(crate) struct Header {
    /// What the cell holds, or [`Freed`]'s vtable if it is free.
    pub(crate) vtable: &'static VTable,
    /// Set while marking; clear outside a collection and always clear on freed cells.
    pub(crate) marked: bool,
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);

/// How the collector handles one Rust type without knowing it. One static instance per type.
pub(crate) struct VTable {
    pub(crate) type_id: TypeId,
    pub(crate) type_name: fn() -> &'static str,
    pub(crate) trace: unsafe fn(NonNull<Header>, &mut Tracer),
    pub(crate) drop: unsafe fn(NonNull<Header>),
    pub(crate) external_bytes: unsafe fn(NonNull<Header>) -> usize,
    pub(crate) update_weak: unsafe fn(NonNull<Header>, &Liveness),
}

impl VTable {
    /// The vtable of `T`.
    pub(crate) fn of<T: Trace>() -> &'static VTable {
        &VTableOf::<T>::VTABLE
    }

    /// The vtable stamped on free cells.
    pub(crate) fn freed() -> &'static VTable {
        Self::of::<Freed>()
    }

    /// Whether this is the vtable of a free cell. Compares type ids, not addresses: a constant
    /// may be instantiated once per codegen unit, so two vtables of one type can differ in address.
    #[inline]
    pub(crate) fn is_freed(&self) -> bool {
        self.type_id == TypeId::of::<Freed>()
    }
}

/// Holder of the per-type vtable constant, which the compiler promotes to a static.
struct VTableOf<T>(PhantomData<T>);

impl<T: Trace> VTableOf<T> {
    const VTABLE: VTable = VTable {
        type_id: TypeId::of::<T>(),
        type_name: std::any::type_name::<T>,
        trace: trace_cell::<T>,
        drop: drop_cell::<T>,
        external_bytes: external_bytes_of_cell::<T>,
        update_weak: update_weak_cell::<T>,
    };
}

/// The type of a free cell's contents. It is private, so no `Gc<T>` can ever name it: a handle
/// to a freed cell fails every type check.
pub(crate) struct Freed;

impl Trace for Freed {
    fn trace(&self, _tracer: &mut Tracer) {}
}

/// The size of the cell that holds a `T`, and its size class, computed at compile time.
pub(crate) struct CellLayout {
    pub(crate) size: usize,
    pub(crate) class: usize,
}

impl CellLayout {
    /// The layout for `T`. Evaluated in a `const` block by `Heap::alloc`, so an oversized or
    /// over-aligned type is a compile error rather than a run-time one.
    pub(crate) const fn of<T>() -> CellLayout {
        assert!(
            std::mem::align_of::<T>() <= CELL_GRANULE,
            "kiln-gc: heap objects must have alignment <= 16"
        );
        let payload = round_up(std::mem::size_of::<T>(), CELL_GRANULE);
        let mut size = HEADER_SIZE + payload;
        if size < MIN_CELL {
            size = MIN_CELL;
        }
        assert!(
            size <= MAX_CELL,
            "kiln-gc: heap objects must fit a 512-byte cell (496 bytes of payload)"
        );
        CellLayout {
            size,
            class: class_of(size),
        }
    }
}

/// The size class serving cells of `size` bytes (a multiple of the granule in the class range).
pub(crate) const fn class_of(size: usize) -> usize {
    (size - MIN_CELL) / CELL_GRANULE
}

/// The cell size of size class `class`.
pub(crate) const fn class_size(class: usize) -> usize {
    MIN_CELL + class * CELL_GRANULE
}

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// The payload of `cell`, as a pointer to `T`.
///
/// # Safety
/// `cell` must point at a cell inside a live block (so the payload, at least
/// `MIN_CELL - HEADER_SIZE` bytes, is in bounds of the same allocation).
#[inline]
pub(crate) unsafe fn payload<T>(cell: NonNull<Header>) -> NonNull<T> {
    // SAFETY: the caller guarantees the cell lies in a block, and every cell is larger than its
    // header, so one header past the cell start is still inside the block allocation.
    unsafe { cell.add(1) }.cast()
}

/// # Safety
/// `cell` must be allocated and hold a valid `T`, with no `&mut T` to it alive.
unsafe fn trace_cell<T: Trace>(cell: NonNull<Header>, tracer: &mut Tracer) {
    // SAFETY: guaranteed by the caller (see above).
    unsafe { payload::<T>(cell).as_ref() }.trace(tracer);
}

/// # Safety
/// `cell` must hold a valid `T` that nothing will use again.
unsafe fn drop_cell<T: Trace>(cell: NonNull<Header>) {
    // SAFETY: guaranteed by the caller (see above).
    unsafe { payload::<T>(cell).drop_in_place() }
}

/// # Safety
/// As for `trace_cell`.
unsafe fn external_bytes_of_cell<T: Trace>(cell: NonNull<Header>) -> usize {
    // SAFETY: guaranteed by the caller (see `trace_cell`).
    unsafe { payload::<T>(cell).as_ref() }.external_bytes()
}

/// # Safety
/// `cell` must be allocated and hold a valid `T`, with no other reference to it alive.
unsafe fn update_weak_cell<T: Trace>(cell: NonNull<Header>, liveness: &Liveness) {
    // SAFETY: guaranteed by the caller (see above).
    unsafe { payload::<T>(cell).as_mut() }.update_weak(liveness);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_up_to_granules() {
        assert_eq!(CellLayout::of::<()>().size, MIN_CELL);
        assert_eq!(CellLayout::of::<u64>().size, 32);
        assert_eq!(CellLayout::of::<[u64; 3]>().size, 48);
        assert_eq!(CellLayout::of::<[u8; 496]>().size, MAX_CELL);
        assert_eq!(CellLayout::of::<[u8; 496]>().class, NUM_CLASSES - 1);
        for class in 0..NUM_CLASSES {
            assert_eq!(class_of(class_size(class)), class);
        }
    }
}
