//! The heap: allocation, full mark-sweep collection, pacing and statistics. The pacing policy
//! is explained on [`HeapConfig`]; the collector's phases are `Heap::collect`'s private helpers.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::block::{HeapId, Space};
use crate::cell::{payload, CellLayout, Header, VTable};
use crate::handle::Gc;
use crate::trace::{Liveness, Trace, Tracer};

/// Where heap ids come from; 0 is never handed out (recording tracers use it).
static NEXT_HEAP_ID: AtomicU64 = AtomicU64::new(1);

/// How a heap paces its collections and which debug checks it runs.
///
/// # Pacing
///
/// The heap counts *debt*: bytes allocated since the last collection (cell sizes, plus the
/// external bytes objects report when allocated, plus external growth the VM reports through
/// [`Heap::account`]). [`Heap::should_collect`] compares the debt with a threshold set at the
/// end of every collection from what survived it:
///
/// ```text
/// live      = cell bytes of survivors + their external bytes
/// threshold = max(min_threshold, live * pause_percent / 100)
/// ```
///
/// With the default `pause_percent` of 100 the heap may grow to twice its live size before the
/// next collection, like Lua 5.4's default pause of 200%: the work of a full collection, which
/// is proportional to the heap, is paid for by at least as many bytes of new allocation, so the
/// amortised cost per allocated byte stays constant however large the heap gets. `min_threshold`
/// keeps small heaps from collecting constantly. Shrinking (a negative `account`) lowers the
/// reported heap size but does not pay off debt: the pause is a promise about allocation volume.
///
/// The heap never collects on its own: [`Heap::alloc`] never collects, and the VM calls
/// [`Heap::collect`] at its safe points when `should_collect` says so, passing its roots.
#[derive(Clone, Debug)]
pub struct HeapConfig {
    /// Collect at every allocation: [`Heap::should_collect`] is true whenever anything was
    /// allocated since the last collection. Shakes out rooting bugs (clox's `DEBUG_STRESS_GC`).
    pub stress: bool,
    /// Run [`Heap::verify`] after every collection and panic with its message if it fails.
    pub verify: bool,
    /// The next collection is due when the bytes allocated since the last one reach
    /// `live_bytes * pause_percent / 100` (default 100: the heap doubles).
    pub pause_percent: usize,
    /// Never collect before this many bytes were allocated (default 1 MiB).
    pub min_threshold: usize,
}

impl Default for HeapConfig {
    fn default() -> Self {
        HeapConfig {
            stress: false,
            verify: false,
            pause_percent: 100,
            min_threshold: 1 << 20,
        }
    }
}

/// A snapshot of a heap's size and collector activity.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapStats {
    /// Bytes in allocated cells plus the external bytes of their objects (as last measured at a
    /// collection, plus what was allocated or accounted since).
    pub heap_bytes: usize,
    /// Allocated (not freed) objects.
    pub objects: usize,
    /// Collections run so far.
    pub collections: u64,
    /// Duration of the last collection, in microseconds.
    pub last_pause_us: u64,
    /// Longest collection so far, in microseconds.
    pub max_pause_us: u64,
    /// Blocks (64 KiB each) the heap holds.
    pub blocks: usize,
    /// Every byte ever counted as allocation: cells, external bytes at allocation, and
    /// positive [`Heap::account`] deltas.
    pub total_allocated_bytes: u64,
}

/// A garbage-collected heap: one per task. `Send`, so a task can move between worker threads,
/// but not `Sync`: it hands out `&T`s of objects that need not be `Sync`.
pub struct Heap {
    id: HeapId,
    config: HeapConfig,
    space: Space,
    /// Allocated objects of `HAS_WEAK` types.
    weak: Vec<NonNull<Header>>,
    /// The mark stack, kept between collections to reuse its allocation.
    mark_stack: Vec<NonNull<Header>>,
    /// True from the start of marking to the end of sweeping. Still true at the next
    /// collection only if a panic (from a `Trace` impl or a destructor) cut the last one short.
    collecting: bool,
    objects: usize,
    cell_bytes: usize,
    external_bytes: usize,
    /// Bytes allocated since the last collection.
    debt: usize,
    /// `should_collect` turns true when `debt` reaches this.
    threshold: usize,
    /// Bytes allocated before the last collection.
    paid: u64,
    collections: u64,
    last_pause_us: u64,
    max_pause_us: u64,
}

// SAFETY: the heap exclusively owns its blocks and every object in them, all of which are
// `Send` (`Trace: Send`). Its raw pointers point only into those blocks. Handles held elsewhere
// grant no access without the heap.
unsafe impl Send for Heap {}

impl Heap {
    /// An empty heap.
    pub fn new(config: HeapConfig) -> Heap {
        let id = NEXT_HEAP_ID.fetch_add(1, Ordering::Relaxed);
        let mut heap = Heap {
            id,
            space: Space::new(id),
            weak: Vec::new(),
            mark_stack: Vec::new(),
            collecting: false,
            objects: 0,
            cell_bytes: 0,
            external_bytes: 0,
            debt: 0,
            threshold: 0,
            paid: 0,
            collections: 0,
            last_pause_us: 0,
            max_pause_us: 0,
            config,
        };
        heap.threshold = heap.next_threshold(0);
        heap
    }

    pub(crate) fn id(&self) -> HeapId {
        self.id
    }

    /// Moves `value` into the heap. Never collects: the VM collects at its safe points.
    ///
    /// `T` must be at most 16-aligned and at most 496 bytes (a 512-byte cell); anything else is
    /// a compile error.
    #[inline]
    pub fn alloc<T: Trace>(&mut self, value: T) -> Gc<T> {
        let layout = const { CellLayout::of::<T>() };
        let external = value.external_bytes();
        let cell = self.space.take_cell(layout.class, layout.size);
        // SAFETY: `take_cell` returned a cell of `layout.size` bytes in one of our blocks that
        // is either fresh or freed, so nothing refers to its contents; the layout has room and
        // alignment for a header followed by a `T`.
        unsafe {
            cell.write(Header {
                vtable: VTable::of::<T>(),
                marked: false,
            });
            payload::<T>(cell).write(value);
        }
        if T::HAS_WEAK {
            self.weak.push(cell);
        }
        // Cell bytes are bounded by real memory; external bytes are an object's claim, so the
        // sums that include them saturate.
        self.objects += 1;
        self.cell_bytes += layout.size;
        self.external_bytes = self.external_bytes.saturating_add(external);
        self.debt = self
            .debt
            .saturating_add(layout.size.saturating_add(external));
        Gc::from_cell(cell)
    }

    /// Whether a collection is due (see "Pacing" on [`HeapConfig`]). In stress mode: whether
    /// anything was allocated since the last collection.
    #[inline]
    pub fn should_collect(&self) -> bool {
        self.debt >= self.threshold
    }

    /// A full mark-sweep collection. `roots` must mark every handle the VM holds outside the
    /// heap (the rooting invariant in the crate docs); everything not reachable from them is
    /// dropped and its cell reused.
    pub fn collect(&mut self, roots: &mut dyn FnMut(&mut Tracer)) {
        let start = Instant::now();
        if self.collecting {
            self.clear_marks();
        }
        self.collecting = true;
        self.mark(roots);
        self.update_weak_refs();
        let survivors_external = self.sweep();
        self.collecting = false;
        self.finish_cycle(survivors_external, start.elapsed());
        if self.config.verify {
            if let Err(problem) = self.verify(roots) {
                panic!(
                    "kiln-gc: heap verification failed after collection {}: {problem}",
                    self.collections
                );
            }
        }
    }

    /// Reports that objects grew (`delta > 0`) or shrank (`delta < 0`) their external storage
    /// by `delta` bytes after allocation, for pacing and [`HeapStats::heap_bytes`].
    pub fn account(&mut self, delta: isize) {
        let bytes = delta.unsigned_abs();
        if delta >= 0 {
            self.external_bytes = self.external_bytes.saturating_add(bytes);
            self.debt = self.debt.saturating_add(bytes);
        } else {
            self.external_bytes = self.external_bytes.saturating_sub(bytes);
        }
    }

    /// Size and activity figures.
    pub fn stats(&self) -> HeapStats {
        HeapStats {
            heap_bytes: self.cell_bytes.saturating_add(self.external_bytes),
            objects: self.objects,
            collections: self.collections,
            last_pause_us: self.last_pause_us,
            max_pause_us: self.max_pause_us,
            blocks: self.space.block_count(),
            total_allocated_bytes: self.paid.saturating_add(self.debt as u64),
        }
    }

    /// Checks the heap's integrity: every handle reported by the roots and by every allocated
    /// object points into a block of this heap, at a cell boundary, to an allocated cell of the
    /// handle's type; no mark bit is set outside a collection; the object count and the free
    /// lists are consistent. Returns a description of the first problem found.
    ///
    /// A debug tool (Lua's `lua_checkmemory`): it visits the whole heap.
    pub fn verify(&self, roots: &mut dyn FnMut(&mut Tracer)) -> Result<(), String> {
        crate::verify::check(&self.space, self.objects, roots)
    }

    fn mark(&mut self, roots: &mut dyn FnMut(&mut Tracer)) {
        let mut tracer = Tracer::marking(self.id, std::mem::take(&mut self.mark_stack));
        roots(&mut tracer);
        self.mark_stack = tracer.drain();
    }

    /// Lets live weak holders drop references to dead objects, and forgets dead weak holders.
    fn update_weak_refs(&mut self) {
        let liveness = Liveness::new(self.id);
        self.weak.retain(|&cell| {
            // SAFETY: the weak list holds allocated cells of this heap: a cell leaves it here as
            // soon as it is found unmarked, before the sweep frees it.
            let header = unsafe { cell.read() };
            if header.marked {
                // SAFETY: the cell holds a live object of the vtable's type, and the collector
                // holds the heap exclusively, so no other reference to the object exists.
                unsafe { (header.vtable.update_weak)(cell, &liveness) };
            }
            header.marked
        });
    }

    /// Drops and frees unmarked objects and unmarks the rest. Returns the survivors' external
    /// bytes.
    fn sweep(&mut self) -> usize {
        let mut survivors_external = 0usize;
        for index in 0..self.space.run_count() {
            let cells = self.space.cells_of(index);
            let cell_size = cells.cell_size();
            for cell in cells {
                // SAFETY: `cells_of` yields only cells handed out in our run, whose headers
                // are initialised; no reference to a header exists during a collection.
                let header = unsafe { &mut *cell.as_ptr() };
                if header.vtable.is_freed() {
                    continue;
                }
                if header.marked {
                    header.marked = false;
                    // SAFETY: the cell holds a live object of the vtable's type.
                    let external = unsafe { (header.vtable.external_bytes)(cell) };
                    survivors_external = survivors_external.saturating_add(external);
                } else {
                    // SAFETY: the cell is allocated in our run and unreachable from the roots.
                    unsafe { self.free(cell, cell_size) };
                }
            }
        }
        survivors_external
    }

    /// Drops the object in `cell` and puts the cell on its free list.
    ///
    /// # Safety
    /// `cell` must be an allocated cell of `cell_size` bytes in one of this heap's blocks, with
    /// no reference to its object alive.
    unsafe fn free(&mut self, cell: NonNull<Header>, cell_size: usize) {
        // SAFETY: the caller guarantees the cell is allocated and unreferenced.
        let vtable = unsafe { std::mem::replace(&mut (*cell.as_ptr()).vtable, VTable::freed()) };
        self.objects -= 1;
        self.cell_bytes -= cell_size;
        // The cell is already marked freed, so a panicking destructor loses this slot (it is
        // never put on the free list) but can never cause a second drop.
        // SAFETY: the cell held a valid object of the vtable's type that nothing refers to.
        unsafe { (vtable.drop)(cell) };
        // SAFETY: the cell is ours, of `cell_size` bytes, freed, and its payload is now dead.
        unsafe { self.space.push_free(cell, cell_size) };
    }

    /// Clears the marks a panicking collection left behind, so marking starts from a clean slate.
    fn clear_marks(&mut self) {
        for cell in self.space.cells() {
            // SAFETY: `cells` yields only cells handed out in our blocks (headers initialised);
            // `&mut self` rules out any reference to them.
            unsafe { (*cell.as_ptr()).marked = false };
        }
    }

    fn finish_cycle(&mut self, survivors_external: usize, pause: Duration) {
        self.external_bytes = survivors_external;
        self.threshold = self.next_threshold(self.cell_bytes.saturating_add(survivors_external));
        self.paid = self.paid.saturating_add(self.debt as u64);
        self.debt = 0;
        self.collections += 1;
        self.last_pause_us = u64::try_from(pause.as_micros()).unwrap_or(u64::MAX);
        self.max_pause_us = self.max_pause_us.max(self.last_pause_us);
    }

    /// The debt at which the next collection is due, given the live bytes after this one.
    fn next_threshold(&self, live: usize) -> usize {
        if self.config.stress {
            return 1;
        }
        let paced = live.saturating_mul(self.config.pause_percent) / 100;
        // At least one byte, so a heap that allocated nothing is never due.
        paced.max(self.config.min_threshold).max(1)
    }
}

impl Drop for Heap {
    /// Drops every allocated object; the blocks then go back to the spare list through their own
    /// destructors (which run even if an object's destructor panics).
    fn drop(&mut self) {
        for cell in self.space.cells() {
            // SAFETY: `cells` yields only cells handed out in our blocks (headers initialised);
            // `&mut self` rules out any reference to their objects.
            unsafe {
                let header = &mut *cell.as_ptr();
                if !header.vtable.is_freed() {
                    let vtable = std::mem::replace(&mut header.vtable, VTable::freed());
                    (vtable.drop)(cell);
                }
            }
        }
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("id", &self.id)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
