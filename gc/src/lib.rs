//! `kiln-gc`: the per-task heap of the Kiln runtime, a non-moving mark-sweep collector over
//! size-classed blocks.
//!
//! **Architecture Invariant:** gc knows nothing about the language. It stores any type that
//! implements [`Trace`], hands out [`Gc`] handles to it, and frees what the roots the caller
//! passes to [`Heap::collect`] no longer reach.
//!
//! ```
//! use kiln_gc::{Gc, Heap, HeapConfig, Trace, Tracer};
//!
//! struct Pair { left: Option<Gc<Pair>>, value: i64 }
//!
//! impl Trace for Pair {
//!     fn trace(&self, tracer: &mut Tracer) {
//!         if let Some(left) = self.left {
//!             tracer.mark(left);
//!         }
//!     }
//! }
//!
//! let mut heap = Heap::new(HeapConfig::default());
//! let a = heap.alloc(Pair { left: None, value: 1 });
//! let b = heap.alloc(Pair { left: Some(a), value: 2 });
//! heap.alloc(Pair { left: None, value: 3 }); // unreachable
//! heap.collect(&mut |tracer| tracer.mark(b));
//! assert_eq!(heap.stats().objects, 2);
//! assert_eq!(b.get(&heap).left.unwrap().get(&heap).value, 1);
//! ```
//!
//! # The `Trace` contract
//!
//! A [`Trace`] implementation must keep these rules (breaking one is a bug in the
//! implementation, caught as described, never undefined behaviour):
//!
//! 1. `trace` must call [`Tracer::mark`] (or [`Tracer::mark_any`]) on every `Gc` the object
//!    holds strongly. A missed handle lets its object be freed while still referenced; the next
//!    access through it panics with "kiln-gc: stale or mistyped Gc handle", and
//!    [`Heap::verify`] reports it by name.
//! 2. `trace` must not allocate or access the heap. (It is given no heap to do so with.)
//! 3. `Drop` impls of traced types must not dereference `Gc` handles: during a sweep the
//!    objects they point to may already be gone. (Dereferencing needs the heap, which the
//!    collector holds exclusively while dropping.)
//! 4. The rooting invariant: at every collection, every object the caller will use again is
//!    reachable from the roots it passes to [`Heap::collect`]. [`Heap::alloc`] never collects,
//!    so handles need only be rooted across the VM's own safe points.
//!
//! Heap objects must be `Send` (a heap moves between threads with its task), at most
//! 16-aligned and at most 496 bytes; the last two are checked at compile time by `alloc`.
//!
//! # Why the safe API is sound
//!
//! A [`Gc`] is a bare address, so the API must stay memory-safe when a handle outlives its
//! object (a broken rule 1 or 4). It does because of three facts:
//!
//! - Blocks are never returned to the allocator, a block changes owner only when its heap is
//!   dropped, and a run of cells never changes size class. A handle therefore always points
//!   at the start of a real cell with an initialised header, even after its object was freed
//!   and the cell reused.
//! - The header tells the truth: it names the type of the object in the cell, or a private
//!   `Freed` type. [`Gc::get`] and [`Gc::get_mut`] compare that type's `TypeId` with `T`'s and
//!   panic on a mismatch, so they only ever produce a `&T` to a live `T`. A stale handle whose
//!   cell was reused by another `T` yields that other object: wrong, but memory-safe.
//! - Every block starts with the id of the heap that owns it, and every access checks it
//!   against the heap it was given, so a handle from another heap (maybe on another thread)
//!   panics instead of reading or writing memory that heap is using.
//!
//! What cannot be checked is a handle used after the heap that allocated it was dropped: its
//! block may belong to another heap by then, perhaps on another thread. Handles must not
//! outlive their heap; the VM guarantees this by copying values that cross tasks into the
//! receiving heap.
//!
//! # Collection, pacing and debug modes
//!
//! [`Heap::collect`] marks from the roots with an explicit mark stack (no recursion, so a
//! million-long linked list is fine), lets objects holding weak references
//! ([`Trace::HAS_WEAK`]) clear the dead ones, then sweeps every block, dropping unmarked
//! objects and threading their cells onto per-class free lists. When collections are due is
//! explained on [`HeapConfig`] ("Pacing"). [`HeapConfig::stress`] makes one due after
//! every allocation; [`HeapConfig::verify`] runs [`Heap::verify`] after every collection.
//!
//! # Where the unsafe code is
//!
//! Only in this crate, and each block carries a `SAFETY:` comment:
//! - `block`: carving 64 KiB blocks from regions, reading a block's owner from a cell address,
//!   free-list links and bump allocation;
//! - `cell`: the per-type vtable functions that reach an object through its cell;
//! - `handle`: dereferencing a checked handle, and `Send`/`Sync` for handles;
//! - `trace`: setting mark bits and tracing queued objects;
//! - `heap`: writing new objects into cells, sweeping, dropping everything on `Drop`, and
//!   `Send` for `Heap`;
//! - `verify`: reading headers of cells it has first located in the heap's own blocks;
//! - `malloc`: the one call that tunes the C allocator.

#![deny(missing_docs)]

mod block;
mod cell;
mod handle;
mod heap;
mod malloc;
mod pauses;
mod trace;
mod verify;

#[cfg(test)]
mod tests;

pub use handle::{Gc, GcAny};

/// Bytes from a handle's address ([`Gc::addr`]) to its object. Only JIT glue that reads
/// objects in place needs this; everything else goes through [`Gc::get`].
pub const PAYLOAD_OFFSET: usize = cell::HEADER_SIZE;
pub use heap::{Heap, HeapConfig, HeapStats, Refused};
pub use malloc::share_one_malloc_arena;
pub use trace::{Liveness, Trace, Tracer};
