//! The tracing contract: the [`Trace`] trait objects implement, the [`Tracer`] they report their
//! handles to, and the [`Liveness`] view weak references consult after marking.

use std::any::TypeId;
use std::ptr::NonNull;

use crate::block::HeapId;
use crate::cell::{Header, VTable};
use crate::handle::{Gc, GcAny};

/// Implemented by every type stored in a [`Heap`](crate::Heap). The rules an implementation must
/// keep are listed in the crate documentation ("The `Trace` contract").
pub trait Trace: Send + 'static {
    /// Reports every [`Gc`] this object holds strongly, by calling [`Tracer::mark`] on each.
    fn trace(&self, tracer: &mut Tracer);

    /// Bytes this object owns outside its cell (`Vec`/`String` buffers...), for accounting and
    /// pacing. Measured when the object is allocated and again at every collection it survives.
    fn external_bytes(&self) -> usize {
        0
    }

    /// True for types that hold weak references; the heap then calls
    /// [`update_weak`](Trace::update_weak) on live objects of this type after every marking.
    const HAS_WEAK: bool = false;

    /// Called after marking on live objects of `HAS_WEAK` types: clear references to objects
    /// that `liveness` reports dead, because they are about to be freed.
    fn update_weak(&mut self, _liveness: &Liveness) {}
}

/// Receives the handles an object (or the root set) holds. Marking keeps an explicit stack of
/// objects still to trace, so deep object graphs never recurse on the Rust stack.
pub struct Tracer {
    heap: HeapId,
    /// Marked objects whose own handles are not traced yet.
    stack: Vec<NonNull<Header>>,
    /// `Some` while verifying: handles, which may be broken, are recorded without being touched.
    recorded: Option<Vec<Edge>>,
}

/// A handle reported while verifying.
pub(crate) struct Edge {
    pub(crate) addr: usize,
    /// The type the handle claims to point at, unless it was reported type-erased.
    pub(crate) expected: Option<(TypeId, &'static str)>,
}

impl Tracer {
    /// A marking tracer for heap `heap`, reusing `stack`'s allocation.
    pub(crate) fn marking(heap: HeapId, stack: Vec<NonNull<Header>>) -> Tracer {
        debug_assert!(stack.is_empty());
        Tracer {
            heap,
            stack,
            recorded: None,
        }
    }

    /// A tracer that records handles for the verifier.
    pub(crate) fn recording() -> Tracer {
        Tracer {
            heap: HeapId::default(),
            stack: Vec::new(),
            recorded: Some(Vec::new()),
        }
    }

    /// Marks the object `gc` points to as reachable.
    ///
    /// Panics if `gc` belongs to another heap or points to a freed cell (a handle that escaped
    /// rooting: the rooting invariant was broken at an earlier collection).
    #[inline]
    pub fn mark<T: Trace>(&mut self, gc: Gc<T>) {
        match &mut self.recorded {
            None => self.mark_cell(gc.erase()),
            Some(edges) => edges.push(Edge {
                addr: gc.addr(),
                expected: Some((TypeId::of::<T>(), std::any::type_name::<T>())),
            }),
        }
    }

    /// Marks the object `gc` points to as reachable (type-erased form of [`Tracer::mark`]).
    #[inline]
    pub fn mark_any(&mut self, gc: GcAny) {
        match &mut self.recorded {
            None => self.mark_cell(gc),
            Some(edges) => edges.push(Edge {
                addr: gc.addr(),
                expected: None,
            }),
        }
    }

    #[inline]
    fn mark_cell(&mut self, gc: GcAny) {
        let cell = gc.cell_in(self.heap).as_ptr();
        // SAFETY: `cell_in` checked that the cell belongs to this heap, and handles only ever
        // point at cells handed out by `alloc`, so the header is initialised. Marking holds the
        // heap exclusively; the only live references are to payloads being traced, never to
        // headers.
        unsafe {
            if (*cell).marked {
                return;
            }
            if (*cell).vtable.is_freed() {
                crate::handle::stale_handle();
            }
            (*cell).marked = true;
        }
        self.stack.push(gc.cell());
    }

    /// Traces queued objects until none is left. Returns the (empty) stack for reuse.
    pub(crate) fn drain(mut self) -> Vec<NonNull<Header>> {
        while let Some(cell) = self.stack.pop() {
            // SAFETY: only cells that passed `mark_cell`'s checks are queued: allocated cells of
            // this heap. The collector holds the heap exclusively, so no `&mut` to the object
            // exists while it is traced.
            unsafe { (vtable_of(cell).trace)(cell, &mut self) };
        }
        self.stack
    }

    /// Takes the handles recorded so far (none unless this is a recording tracer).
    pub(crate) fn take_edges(&mut self) -> Vec<Edge> {
        self.recorded
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

/// The vtable of a queued cell.
fn vtable_of(cell: NonNull<Header>) -> &'static VTable {
    // SAFETY: only cells that passed `mark_cell`'s checks are queued, so the header is
    // initialised; reading it through a raw pointer creates no lasting reference.
    unsafe { (*cell.as_ptr()).vtable }
}

/// What survived marking, for [`Trace::update_weak`].
pub struct Liveness {
    heap: HeapId,
}

impl Liveness {
    pub(crate) fn new(heap: HeapId) -> Liveness {
        Liveness { heap }
    }

    /// Whether the object `gc` points to survives this collection. A handle to a freed cell is
    /// reported dead. Panics if `gc` belongs to another heap.
    pub fn is_live<T: Trace>(&self, gc: Gc<T>) -> bool {
        self.is_live_any(gc.erase())
    }

    /// Type-erased form of [`Liveness::is_live`].
    pub fn is_live_any(&self, gc: GcAny) -> bool {
        let cell = gc.cell_in(self.heap).as_ptr();
        // SAFETY: `cell_in` checked the cell is one of this heap's, so its header is
        // initialised; only payloads are referenced during weak processing.
        unsafe { (*cell).marked }
    }
}
