//! The heap: allocation, full mark-sweep collection, pacing and statistics. The pacing policy
//! is explained on [`HeapConfig`]; the collector's phases are `Heap::collect`'s private helpers.

use std::fmt;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::block::{HeapId, Space};
use crate::cell::{payload, CellLayout, Header, VTable};
use crate::handle::Gc;
use crate::pauses::Pauses;
use crate::trace::{Liveness, Trace, Tracer};

/// Where heap ids come from; 0 is never handed out (recording tracers use it).
static NEXT_HEAP_ID: AtomicU64 = AtomicU64::new(1);

/// How a heap paces its collections and which debug checks it runs.
///
/// # Pacing
///
/// The heap counts *debt*: bytes allocated since the last collection (cell sizes, plus the
/// external bytes objects report when allocated, plus external growth the VM reports through
/// [`Heap::account`]). [`Heap::collection_due`] compares the debt with a threshold set at the
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
/// [`Heap::collect`] at its safe points when [`Heap::should_collect_for`] and [`Heap::collection_due`] say so, passing its roots.
///
/// # The byte limit
///
/// With `max_bytes` set, the trigger that [`Heap::should_collect_for`] compares the debt with is also
/// capped at the room left under the limit (`max_bytes - live`), so the owner's fast path
/// stays one compare and an allocation that might pass the limit always reaches the slow
/// path. There the owner collects if [`Heap::collection_due`] and then asks
/// [`Heap::fits`]; only a heap that is still too full after a collection refuses. Close to
/// the limit the heap collects often: that is the price of a hard bound, as in Lua.
#[derive(Clone, Debug)]
pub struct HeapConfig {
    /// Collect at every `n`-th allocation: [`Heap::collection_due`] is true once `n`
    /// allocations asked [`Heap::admit`] since the last collection (every allocation takes
    /// the slow path in stress mode). `n = 1` shakes out rooting bugs (clox's
    /// `DEBUG_STRESS_GC`); a larger `n` lets garbage pile up between collections, so that
    /// sweeping and reusing cells are stressed too, and runs faster. `None`: pacing decides.
    pub stress: Option<NonZeroU32>,
    /// Run [`Heap::verify`] after every collection and panic with its message if it fails.
    pub verify: bool,
    /// The next collection is due when the bytes allocated since the last one reach
    /// `live_bytes * pause_percent / 100` (default 100: the heap doubles).
    pub pause_percent: usize,
    /// Never collect before this many bytes were allocated (default 1 MiB).
    pub min_threshold: usize,
    /// The most bytes ([`HeapStats::heap_bytes`]) the heap may hold after a collection has
    /// had its chance; `None` for no bound. See "The byte limit".
    pub max_bytes: Option<usize>,
    /// A test hook (Lua's memerr.lua, SpiderMonkey's oomTest): the `k`-th allocation that
    /// asks [`Heap::admit`] (counting from 1) is refused as if memory had run out. While it
    /// is set, [`Heap::should_collect_for`] is always true, so every allocation asks.
    pub fail_allocation: Option<u64>,
}

impl Default for HeapConfig {
    fn default() -> Self {
        HeapConfig {
            stress: None,
            verify: false,
            pause_percent: 100,
            min_threshold: 1 << 20,
            max_bytes: None,
            fail_allocation: None,
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
    /// The pause 99% of collections so far did not exceed, in microseconds (within
    /// 12.5%: see `pauses`).
    pub p99_pause_us: u64,
    /// Blocks (64 KiB each) the heap holds.
    pub blocks: usize,
    /// Every byte ever counted as allocation: cells, external bytes at allocation, and
    /// positive [`Heap::account`] deltas.
    pub total_allocated_bytes: u64,
}

/// Why the heap refused an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The allocator had no memory (or the test hook [`HeapConfig::fail_allocation`] fired).
    OutOfMemory,
    /// The allocation would take the heap past [`HeapConfig::max_bytes`].
    OverLimit,
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
    /// A collection is due when `debt` reaches this (see "Pacing").
    threshold: usize,
    /// `should_collect_for` turns true when `debt` reaches this: `threshold` capped by the
    /// room under the limit, or 0 while the failure hook is armed.
    trigger: usize,
    /// Allocations announced on the slow path, for [`HeapConfig::fail_allocation`] and
    /// [`HeapConfig::stress`].
    announced: u64,
    /// `announced` at the end of the last collection.
    announced_at_collection: u64,
    /// Bytes allocated before the last collection.
    paid: u64,
    collections: u64,
    last_pause_us: u64,
    max_pause_us: u64,
    pauses: Pauses,
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
            trigger: 0,
            announced: 0,
            announced_at_collection: 0,
            paid: 0,
            collections: 0,
            last_pause_us: 0,
            max_pause_us: 0,
            pauses: Pauses::default(),
            config,
        };
        heap.set_thresholds(0);
        heap
    }

    pub(crate) fn id(&self) -> HeapId {
        self.id
    }

    /// Moves `value` into the heap, panicking if the allocator has no memory left. For hosts
    /// and tests that treat that as fatal; the VM uses [`Heap::try_alloc`].
    pub fn alloc<T: Trace>(&mut self, value: T) -> Gc<T> {
        match self.try_alloc(value) {
            Ok(handle) => handle,
            Err(_) => panic!("kiln-gc: out of memory"),
        }
    }

    /// Moves `value` into the heap, or gives up (dropping `value`) if a new block was needed
    /// and the allocator refused it. Never collects and never checks the byte limit: the
    /// owner does both on its slow path (see "The byte limit" on [`HeapConfig`]).
    ///
    /// `T` must be at most 16-aligned and at most 496 bytes (a 512-byte cell); anything else is
    /// a compile error.
    #[inline]
    pub fn try_alloc<T: Trace>(&mut self, value: T) -> Result<Gc<T>, Refused> {
        let layout = const { CellLayout::of::<T>() };
        let external = value.external_bytes();
        let cell = self
            .space
            .take_cell(layout.class, layout.size)
            .ok_or(Refused::OutOfMemory)?;
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
        Ok(Gc::from_cell(cell))
    }

    /// The bytes allocating `value` adds to the heap: its cell and its external bytes.
    #[inline]
    pub fn cost_of<T: Trace>(value: &T) -> usize {
        let layout = const { CellLayout::of::<T>() };
        layout.size.saturating_add(value.external_bytes())
    }

    /// The owner's fast-path test before allocating (or growing objects by) `bytes`: false
    /// means go ahead; true means take the slow path, which asks [`Heap::admit`],
    /// [`Heap::collection_due`] and [`Heap::fits`]. One add and one compare.
    #[inline]
    pub fn should_collect_for(&self, bytes: usize) -> bool {
        self.debt.saturating_add(bytes) >= self.trigger
    }

    /// The slow path's first question: may this allocation go ahead at all? Counts it for
    /// the failure hook, which refuses the chosen one with [`Refused::OutOfMemory`].
    pub fn admit(&mut self) -> Result<(), Refused> {
        self.announced += 1;
        if self.config.fail_allocation == Some(self.announced) {
            return Err(Refused::OutOfMemory);
        }
        Ok(())
    }

    /// Whether the owner should collect before adding `bytes`: pacing says so (see "Pacing"
    /// on [`HeapConfig`]; in stress mode, the count of allocations), or they would not fit
    /// under the limit.
    pub fn collection_due(&self, bytes: usize) -> bool {
        let paced = match self.config.stress {
            Some(every) => self.announced - self.announced_at_collection >= u64::from(every.get()),
            None => self.debt.saturating_add(bytes) >= self.threshold,
        };
        paced || !self.fits(bytes)
    }

    /// Whether `bytes` more stay within [`HeapConfig::max_bytes`].
    pub fn fits(&self, bytes: usize) -> bool {
        self.config
            .max_bytes
            .is_none_or(|max| self.bytes().saturating_add(bytes) <= max)
    }

    /// [`HeapStats::heap_bytes`].
    fn bytes(&self) -> usize {
        self.cell_bytes.saturating_add(self.external_bytes)
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
            heap_bytes: self.bytes(),
            objects: self.objects,
            collections: self.collections,
            last_pause_us: self.last_pause_us,
            max_pause_us: self.max_pause_us,
            // The quantile is its bucket's bound, which may pass the longest pause.
            p99_pause_us: self.pauses.quantile(0.99).min(self.max_pause_us),
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
        self.each_allocated(|heap, cell, cell_size| {
            // SAFETY: `each_allocated` yields allocated cells with initialised headers; no
            // reference to a header exists during a collection.
            let header = unsafe { &mut *cell.as_ptr() };
            if header.marked {
                header.marked = false;
                // SAFETY: the cell holds a live object of the vtable's type.
                let external = unsafe { (header.vtable.external_bytes)(cell) };
                survivors_external = survivors_external.saturating_add(external);
            } else {
                // SAFETY: the cell is allocated in our run and unreachable from the roots.
                unsafe { heap.free(cell, cell_size) };
            }
        });
        survivors_external
    }

    /// Calls `f` with every allocated (not freed) cell and its size, run by run.
    fn each_allocated(&mut self, mut f: impl FnMut(&mut Self, NonNull<Header>, usize)) {
        for index in 0..self.space.run_count() {
            let cells = self.space.cells_of(index);
            let cell_size = cells.cell_size();
            for cell in cells {
                // SAFETY: `cells_of` yields only cells handed out in our run, whose headers
                // are initialised; we only read the vtable word here.
                if unsafe { (*cell.as_ptr()).vtable.is_freed() } {
                    continue;
                }
                f(self, cell, cell_size);
            }
        }
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
        self.set_thresholds(self.bytes());
        self.paid = self.paid.saturating_add(self.debt as u64);
        self.debt = 0;
        self.collections += 1;
        self.announced_at_collection = self.announced;
        self.last_pause_us = u64::try_from(pause.as_micros()).unwrap_or(u64::MAX);
        self.max_pause_us = self.max_pause_us.max(self.last_pause_us);
        self.pauses.record(self.last_pause_us);
    }

    /// Sets when the next collection is due and when the owner's fast path gives way,
    /// given the live bytes after a collection.
    fn set_thresholds(&mut self, live: usize) {
        // In stress mode every allocation takes the slow path, where `admit` counts it.
        self.threshold = if self.config.stress.is_some() {
            1
        } else {
            let paced = live.saturating_mul(self.config.pause_percent) / 100;
            // At least one byte, so a heap that allocated nothing is never due.
            paced.max(self.config.min_threshold).max(1)
        };
        let room = self
            .config
            .max_bytes
            .map_or(usize::MAX, |max| max.saturating_sub(live));
        self.trigger = if self.config.fail_allocation.is_some() {
            0
        } else {
            self.threshold.min(room)
        };
    }
}

impl Heap {
    /// Drops every object and gives the blocks back, then returns the heap's own final
    /// accounting: with every object freed through it, a heap that accounted honestly shows
    /// 0 objects, 0 bytes and 0 blocks (Lua's `checkfinalmem`). Dropping a heap does the same
    /// without the report.
    pub fn release(mut self) -> HeapStats {
        self.free_all();
        self.space.release_blocks();
        self.stats()
    }

    /// Drops every allocated object, accounting each as freed (its cell and its external
    /// bytes as they are now). The cells are not put on free lists: the heap is going away.
    fn free_all(&mut self) {
        self.each_allocated(|heap, cell, cell_size| {
            // SAFETY: `each_allocated` yields allocated cells with initialised headers;
            // `&mut self` rules out any reference to their objects.
            let header = unsafe { &mut *cell.as_ptr() };
            // Marked freed first, so a panicking destructor can never cause a second drop.
            let vtable = std::mem::replace(&mut header.vtable, VTable::freed());
            // SAFETY: the cell held a live object of the vtable's type, which nothing can
            // use again: the heap is going away.
            let external = unsafe { (vtable.external_bytes)(cell) };
            heap.external_bytes = heap.external_bytes.saturating_sub(external);
            heap.objects -= 1;
            heap.cell_bytes -= cell_size;
            // SAFETY: as above; the object is dropped exactly once.
            unsafe { (vtable.drop)(cell) };
        });
        self.weak.clear();
    }
}

impl Drop for Heap {
    /// Drops every allocated object; the blocks then go back to the spare list through their own
    /// destructors (which run even if an object's destructor panics).
    fn drop(&mut self) {
        self.free_all();
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
