//! Blocks, runs and size classes: where cells come from and where freed cells go.
//!
//! A block is 64 KiB, aligned to 64 KiB, so the block of any cell is its address with the low
//! 16 bits cleared. Its first 16 bytes are a [`BlockHeader`] naming the heap that owns it. The
//! rest is carved, front to back, into *runs*: arrays of equal cells of one size class. A
//! heap's first runs are small and every size class doubles its next run up to a whole block,
//! so a heap of a few objects uses a few hundred bytes of one block whatever classes they
//! need, while a large heap still gets whole-block runs. A run keeps its class, and a block its
//! owner, until the heap is dropped: that is what lets a stale handle always land on a real cell
//! header (see the crate docs).
//!
//! Blocks come from 4 MiB regions that are never returned to the allocator, and a dropped
//! heap's blocks go to a process-wide spare list that new heaps take from first. A region is
//! allocated once and touched only where blocks are used, so the untouched pages of a heap's
//! block cost no memory (allocators map regions this large afresh from the OS): an idle task
//! costs the pages its objects are on, not 64 KiB per size class.
//!
//! Each size class has a free list threaded through the payloads of its freed cells and a bump
//! region in its newest run. Allocation pops the free list, else bumps, else carves a new run.

use std::alloc::Layout;
use std::ptr::NonNull;

use crate::cell::{class_of, class_size, payload, Header, NUM_CLASSES};

/// Size and alignment of a block.
pub(crate) const BLOCK_SIZE: usize = 64 * 1024;
/// Offset of the first run in a block.
const CELLS_START: usize = std::mem::size_of::<BlockHeader>();
/// Bytes a size class's first run spans (rounded down to whole cells, at least one): enough
/// for the handful of objects of a short task, small enough that all classes such a task uses
/// share one page.
const FIRST_RUN: usize = 512;
/// The longest run: the whole of a block after its header.
const MAX_RUN: usize = BLOCK_SIZE - CELLS_START;
/// Blocks per region (4 MiB).
const REGION_BLOCKS: usize = 64;

const _: () = assert!(CELLS_START.is_multiple_of(16));

/// Identifies a heap; stamped into every block it owns.
pub(crate) type HeapId = u64;

/// The first bytes of every block.
#[repr(C, align(16))]
struct BlockHeader {
    /// Written when a heap takes the block, before any handle into it exists; never again
    /// while that heap lives.
    owner: HeapId,
}

/// The heap that owns the block containing `cell`.
///
/// # Safety
/// `cell` must point into a block that is allocated (blocks never are freed once allocated,
/// but the block must belong to a live heap for the answer to mean anything).
#[inline]
pub(crate) unsafe fn owner_of(cell: NonNull<Header>) -> HeapId {
    let header = cell
        .as_ptr()
        .cast::<u8>()
        .map_addr(|addr| addr & !(BLOCK_SIZE - 1))
        .cast::<BlockHeader>();
    // SAFETY: the caller guarantees the block is allocated. Blocks are `BLOCK_SIZE`-aligned, so
    // clearing the low bits of an address inside one yields its start, where the initialised
    // `BlockHeader` lives; `map_addr` keeps the provenance of the whole region allocation.
    unsafe { (*header).owner }
}

/// One 64 KiB block a heap owns; given back to the spare list when dropped.
struct Block {
    base: NonNull<u8>,
}

impl Block {
    /// A block for `owner`, or `None` when the allocator refuses a new region.
    fn new(owner: HeapId) -> Option<Block> {
        let base = pool().take()?;
        // SAFETY: `take` hands out BLOCK_SIZE bytes aligned to BLOCK_SIZE that nothing else
        // uses, with room for the header at their start.
        unsafe { base.cast::<BlockHeader>().write(BlockHeader { owner }) };
        Some(Block { base })
    }

    fn start(&self) -> usize {
        self.base.addr().get()
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        pool().spares.push(self.base);
    }
}

/// Where blocks come from: the spares of dropped heaps, then the newest region.
struct Pool {
    /// Blocks no heap owns; the most recently dropped (whose pages are warm) is reused first.
    spares: Vec<NonNull<u8>>,
    /// The first block of the newest region that no heap has taken yet, and how many follow it.
    fresh: Option<(NonNull<u8>, usize)>,
}

// SAFETY: the pool's pointers are to block memory that only the pool refers to; whichever
// thread takes a block becomes its sole owner.
unsafe impl Send for Pool {}

impl Pool {
    fn take(&mut self) -> Option<NonNull<u8>> {
        if let Some(base) = self.spares.pop() {
            return Some(base);
        }
        let (base, left) = match self.fresh {
            Some(fresh) => fresh,
            None => (new_region()?, REGION_BLOCKS),
        };
        self.fresh = (left > 1).then(|| {
            // SAFETY: `left > 1` blocks remain from `base` on, so the next one is inside the
            // region allocation.
            (unsafe { base.add(BLOCK_SIZE) }, left - 1)
        });
        Some(base)
    }
}

/// A new region of `REGION_BLOCKS` blocks, or `None` when the allocator refuses (the heap
/// then reports `out of memory` instead of aborting). Regions are never freed: their blocks
/// circulate between heaps through the spare list.
fn new_region() -> Option<NonNull<u8>> {
    let layout = Layout::from_size_align(BLOCK_SIZE * REGION_BLOCKS, BLOCK_SIZE)
        .expect("constant power-of-two layout");
    // SAFETY: the layout has non-zero size.
    NonNull::new(unsafe { std::alloc::alloc(layout) })
}

static POOL: std::sync::Mutex<Pool> = std::sync::Mutex::new(Pool {
    spares: Vec::new(),
    fresh: None,
});

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // The pool is valid whatever a panicking holder was doing: every change is whole.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A run of equal cells, as an iterator over those handed out so far that does not borrow the
/// heap.
#[derive(Clone)]
pub(crate) struct CellRange {
    /// The first cell.
    start: NonNull<u8>,
    cell_size: usize,
    /// Offset from `start` of the next cell to yield.
    next: usize,
    /// Offset from `start` just past the last cell handed out.
    end: usize,
}

impl CellRange {
    /// Size of every cell in the range.
    pub(crate) fn cell_size(&self) -> usize {
        self.cell_size
    }

    /// The address of the run's first cell.
    pub(crate) fn start_addr(&self) -> usize {
        self.start.addr().get()
    }

    /// The cell starting exactly at `addr`, if `addr` is one of this range's cell boundaries.
    pub(crate) fn cell_at(&self, addr: usize) -> Option<NonNull<Header>> {
        let offset = addr.checked_sub(self.start_addr())?;
        (offset.is_multiple_of(self.cell_size) && offset < self.end).then(|| self.cell(offset))
    }

    fn cell(&self, offset: usize) -> NonNull<Header> {
        // SAFETY: callers pass offsets below `end`, which never passes the end of the run, so
        // the result is inside the run's block.
        unsafe { self.start.add(offset) }.cast()
    }
}

impl Iterator for CellRange {
    type Item = NonNull<Header>;

    fn next(&mut self) -> Option<NonNull<Header>> {
        (self.next < self.end).then(|| {
            let cell = self.cell(self.next);
            self.next += self.cell_size;
            cell
        })
    }
}

/// A run carved from one of the heap's blocks.
struct Run {
    start: NonNull<u8>,
    cell_size: usize,
    /// Offset from `start` just past the last cell ever handed out, except for the run a class
    /// is currently bumping in, whose end lives in the class (see [`Space::cells_of`]).
    end: usize,
}

/// Allocation state of one size class.
struct SizeClass {
    /// Head of the free list; each freed cell's payload holds the next link.
    free: Option<NonNull<Header>>,
    /// Next cell to bump-allocate in the current run (null before the first run).
    cursor: *mut u8,
    /// Address just past the last cell of the current run (0 before the first run).
    limit: usize,
    /// Index of the run being bumped in.
    current: Option<usize>,
    /// Bytes the next run of this class asks for.
    next_run: usize,
}

impl SizeClass {
    const EMPTY: SizeClass = SizeClass {
        free: None,
        cursor: std::ptr::null_mut(),
        limit: 0,
        current: None,
        next_run: FIRST_RUN,
    };
}

/// All blocks and runs of one heap and the allocation state of every size class.
pub(crate) struct Space {
    owner: HeapId,
    blocks: Vec<Block>,
    /// The part of the newest block no run has taken yet, as addresses (both 0 before the
    /// first block).
    tail: usize,
    tail_end: usize,
    runs: Vec<Run>,
    classes: [SizeClass; NUM_CLASSES],
}

impl Space {
    pub(crate) fn new(owner: HeapId) -> Space {
        Space {
            owner,
            blocks: Vec::new(),
            tail: 0,
            tail_end: 0,
            runs: Vec::new(),
            classes: [SizeClass::EMPTY; NUM_CLASSES],
        }
    }

    /// A cell of `class` (whose cells are `size` bytes) to initialise: uninitialised if bumped,
    /// a freed cell if popped from the free list; `None` if a new block was needed and the
    /// allocator refused it.
    #[inline]
    pub(crate) fn take_cell(&mut self, class: usize, size: usize) -> Option<NonNull<Header>> {
        debug_assert_eq!(class_size(class), size);
        let state = &mut self.classes[class];
        if let Some(cell) = state.free {
            // SAFETY: free-list cells are freed cells of our runs whose payload holds the link
            // written by `push_free`.
            state.free = unsafe { payload::<Option<NonNull<Header>>>(cell).read() };
            return Some(cell);
        }
        if state.cursor.addr() + size <= state.limit {
            let cell = state.cursor;
            state.cursor = cell.wrapping_add(size);
            // SAFETY: `limit` is non-zero only once `cursor` points into a run, so the
            // comparison above proves `cell` is a non-null address inside that run.
            return Some(unsafe { NonNull::new_unchecked(cell) }.cast());
        }
        self.take_from_new_run(class)
    }

    #[cold]
    #[inline(never)]
    fn take_from_new_run(&mut self, class: usize) -> Option<NonNull<Header>> {
        let size = class_size(class);
        if self.tail_end - self.tail < size {
            // Taken before the class retires its run, so a refusal changes nothing. The rest
            // of the old block (less than one cell) is left unused.
            let block = Block::new(self.owner)?;
            self.tail = block.start() + CELLS_START;
            self.tail_end = block.start() + BLOCK_SIZE;
            self.blocks.push(block);
        }
        self.retire_current(class);
        let state = &mut self.classes[class];
        let want = (state.next_run / size).max(1) * size;
        let bytes = want.min((self.tail_end - self.tail) / size * size);
        state.next_run = (state.next_run * 2).min(MAX_RUN);
        let block = self.blocks.last().expect("a block was just ensured");
        // SAFETY: `tail` lies inside the newest block, at least `bytes` before its end.
        let start = unsafe { block.base.add(self.tail - block.start()) };
        self.tail += bytes;
        state.cursor = start.as_ptr().wrapping_add(size);
        state.limit = start.addr().get() + bytes;
        state.current = Some(self.runs.len());
        self.runs.push(Run {
            start,
            cell_size: size,
            end: 0,
        });
        Some(start.cast())
    }

    /// Records how far the class bumped into its current run before it moves on.
    fn retire_current(&mut self, class: usize) {
        let state = &self.classes[class];
        if let Some(index) = state.current {
            let run = &mut self.runs[index];
            run.end = state.cursor.addr() - run.start.addr().get();
        }
    }

    /// Puts a freed cell of `cell_size` bytes on its class's free list.
    ///
    /// # Safety
    /// `cell` must be a cell of one of this space's runs of that size, already marked freed,
    /// whose payload nothing reads any more.
    pub(crate) unsafe fn push_free(&mut self, cell: NonNull<Header>, cell_size: usize) {
        let state = &mut self.classes[class_of(cell_size)];
        // SAFETY: the caller guarantees the cell is ours and its payload is dead; every payload
        // has room for a pointer (MIN_CELL) and is 16-aligned.
        unsafe { payload::<Option<NonNull<Header>>>(cell).write(state.free) };
        state.free = Some(cell);
    }

    /// Head of the free list of `class`.
    pub(crate) fn free_list(&self, class: usize) -> Option<NonNull<Header>> {
        self.classes[class].free
    }

    /// Gives every block back to the spare list; only for a heap whose objects are all freed.
    pub(crate) fn release_blocks(&mut self) {
        self.runs.clear();
        self.classes = [SizeClass::EMPTY; NUM_CLASSES];
        self.tail = 0;
        self.tail_end = 0;
        self.blocks.clear();
    }

    pub(crate) fn block_count(&self) -> usize {
        self.blocks.len()
    }

    pub(crate) fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// The cells handed out so far in run `index`.
    pub(crate) fn cells_of(&self, index: usize) -> CellRange {
        let run = &self.runs[index];
        let state = &self.classes[class_of(run.cell_size)];
        let end = if state.current == Some(index) {
            state.cursor.addr() - run.start.addr().get()
        } else {
            run.end
        };
        CellRange {
            start: run.start,
            cell_size: run.cell_size,
            next: 0,
            end,
        }
    }

    /// Every cell handed out so far, run by run.
    pub(crate) fn cells(&self) -> impl Iterator<Item = NonNull<Header>> + '_ {
        (0..self.runs.len()).flat_map(|index| self.cells_of(index))
    }
}
