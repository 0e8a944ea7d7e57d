//! Blocks and size classes: where cells come from and where freed cells go.
//!
//! A block is 64 KiB, aligned to 64 KiB, so the block of any cell is its address with the low
//! 16 bits cleared. Its first 16 bytes are a [`BlockHeader`] naming the heap that owns it; the
//! rest is an array of equal cells of one size class. A block keeps its class for its whole
//! life and is only returned to the allocator when the heap is dropped: that is what lets a
//! stale handle always land on a real cell header (see the crate docs).
//!
//! Each size class has a free list threaded through the payloads of its freed cells and a bump
//! region in its newest block. Allocation pops the free list, else bumps, else takes a new block.

use std::alloc::Layout;
use std::ptr::NonNull;

use crate::cell::{class_of, class_size, payload, Header, NUM_CLASSES};

/// Size and alignment of a block.
pub(crate) const BLOCK_SIZE: usize = 64 * 1024;
/// Offset of the first cell in a block.
const CELLS_START: usize = std::mem::size_of::<BlockHeader>();

const _: () = assert!(CELLS_START.is_multiple_of(16));

/// Identifies a heap; stamped into every block it owns.
pub(crate) type HeapId = u64;

/// The first bytes of every block.
#[repr(C, align(16))]
struct BlockHeader {
    /// Written once when the block is created, before any handle into it exists; never again.
    owner: HeapId,
}

/// The heap that owns the block containing `cell`.
///
/// # Safety
/// `cell` must point into a block that has not been deallocated.
#[inline]
pub(crate) unsafe fn owner_of(cell: NonNull<Header>) -> HeapId {
    let header = cell
        .as_ptr()
        .cast::<u8>()
        .map_addr(|addr| addr & !(BLOCK_SIZE - 1))
        .cast::<BlockHeader>();
    // SAFETY: the caller guarantees the block is allocated. Blocks are `BLOCK_SIZE`-aligned, so
    // clearing the low bits of an address inside one yields its start, where the initialised
    // `BlockHeader` lives; `map_addr` keeps the provenance of the whole block allocation.
    unsafe { (*header).owner }
}

/// One 64 KiB block, owning its allocation.
pub(crate) struct Block {
    base: NonNull<u8>,
    cell_size: usize,
    /// Offset just past the last cell ever handed out, except for the block a class is currently
    /// bumping in, whose end lives in the class (see [`Space::cells_of`]).
    end: usize,
}

impl Block {
    fn layout() -> Layout {
        // Both values are constant powers of two, so this cannot fail.
        Layout::from_size_align(BLOCK_SIZE, BLOCK_SIZE).expect("valid block layout")
    }

    fn new(owner: HeapId, cell_size: usize) -> Block {
        let base = match spares().pop() {
            Some(Spare(base)) => base,
            None => {
                // SAFETY: the layout has non-zero size.
                let raw = unsafe { std::alloc::alloc(Self::layout()) };
                let Some(base) = NonNull::new(raw) else {
                    std::alloc::handle_alloc_error(Self::layout())
                };
                base
            }
        };
        // SAFETY: the allocation is BLOCK_SIZE bytes aligned to BLOCK_SIZE, room for the header.
        unsafe { base.cast::<BlockHeader>().write(BlockHeader { owner }) };
        Block {
            base,
            cell_size,
            end: CELLS_START,
        }
    }

    /// Offset just past the last cell that fits.
    fn capacity_end(&self) -> usize {
        CELLS_START + (BLOCK_SIZE - CELLS_START) / self.cell_size * self.cell_size
    }

    fn at(&self, offset: usize) -> NonNull<u8> {
        debug_assert!(offset <= BLOCK_SIZE);
        // SAFETY: `offset` is at most BLOCK_SIZE, so the result is in bounds (or one past the end)
        // of this block's allocation.
        unsafe { self.base.add(offset) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let mut spares = spares();
        if spares.len() < MAX_SPARES {
            spares.push(Spare(self.base));
            return;
        }
        drop(spares);
        // SAFETY: `base` was allocated in `Block::new` with this layout and is freed only here
        // (a block given to the spares is never freed, only handed to a new `Block`).
        unsafe { std::alloc::dealloc(self.base.as_ptr(), Self::layout()) }
    }
}

/// Blocks of dropped heaps, kept for new heaps: with a task per request, every task's heap
/// would otherwise map and unmap its blocks (page faults and TLB shootdowns dominated the
/// cost of a short task). At most [`MAX_SPARES`] blocks (64 MiB) are kept; the rest go back
/// to the allocator.
const MAX_SPARES: usize = 1024;

/// The memory of a block that no heap owns.
struct Spare(NonNull<u8>);

// SAFETY: a spare block is an allocation that only the spare list refers to; whichever thread
// takes it becomes its sole owner.
unsafe impl Send for Spare {}

static SPARES: std::sync::Mutex<Vec<Spare>> = std::sync::Mutex::new(Vec::new());

fn spares() -> std::sync::MutexGuard<'static, Vec<Spare>> {
    // The list is valid whatever a panicking holder was doing: every push and pop is whole.
    SPARES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cells handed out so far in one block, as an iterator that does not borrow the heap.
#[derive(Clone)]
pub(crate) struct CellRange {
    base: NonNull<u8>,
    cell_size: usize,
    next: usize,
    end: usize,
}

impl CellRange {
    /// Size of every cell in the range.
    pub(crate) fn cell_size(&self) -> usize {
        self.cell_size
    }

    /// The start address of the block.
    pub(crate) fn block_addr(&self) -> usize {
        self.base.addr().get()
    }

    /// The cell starting exactly at `addr`, if `addr` is one of this range's cell boundaries.
    pub(crate) fn cell_at(&self, addr: usize) -> Option<NonNull<Header>> {
        let offset = addr.checked_sub(self.block_addr())?;
        let on_boundary =
            offset >= CELLS_START && (offset - CELLS_START).is_multiple_of(self.cell_size);
        (on_boundary && offset < self.end).then(|| self.cell(offset))
    }

    fn cell(&self, offset: usize) -> NonNull<Header> {
        // SAFETY: callers pass offsets below `end`, which never exceeds BLOCK_SIZE, so the
        // result is inside the block allocation.
        unsafe { self.base.add(offset) }.cast()
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

/// Allocation state of one size class.
struct SizeClass {
    /// Head of the free list; each freed cell's payload holds the next link.
    free: Option<NonNull<Header>>,
    /// Next cell to bump-allocate in the current block (null before the first block).
    cursor: *mut u8,
    /// Address just past the last cell of the current block (0 before the first block).
    limit: usize,
    /// Index of the block being bumped in.
    current: Option<usize>,
}

impl SizeClass {
    const EMPTY: SizeClass = SizeClass {
        free: None,
        cursor: std::ptr::null_mut(),
        limit: 0,
        current: None,
    };
}

/// All blocks of one heap and the allocation state of every size class.
pub(crate) struct Space {
    owner: HeapId,
    blocks: Vec<Block>,
    classes: [SizeClass; NUM_CLASSES],
}

impl Space {
    pub(crate) fn new(owner: HeapId) -> Space {
        Space {
            owner,
            blocks: Vec::new(),
            classes: [SizeClass::EMPTY; NUM_CLASSES],
        }
    }

    /// A cell of `class` (whose cells are `size` bytes) to initialise: uninitialised if bumped,
    /// a freed cell if popped from the free list.
    #[inline]
    pub(crate) fn take_cell(&mut self, class: usize, size: usize) -> NonNull<Header> {
        debug_assert_eq!(class_size(class), size);
        let state = &mut self.classes[class];
        if let Some(cell) = state.free {
            // SAFETY: free-list cells are freed cells of our blocks whose payload holds the link
            // written by `push_free`.
            state.free = unsafe { payload::<Option<NonNull<Header>>>(cell).read() };
            return cell;
        }
        if state.cursor.addr() + size <= state.limit {
            let cell = state.cursor;
            state.cursor = cell.wrapping_add(size);
            // SAFETY: `limit` is non-zero only once `cursor` points into a block, so the
            // comparison above proves `cell` is a non-null address inside that block.
            return unsafe { NonNull::new_unchecked(cell) }.cast();
        }
        self.take_from_new_block(class)
    }

    #[cold]
    #[inline(never)]
    fn take_from_new_block(&mut self, class: usize) -> NonNull<Header> {
        self.retire_current(class);
        let block = Block::new(self.owner, class_size(class));
        let cell = block.at(CELLS_START);
        let state = &mut self.classes[class];
        state.cursor = cell.as_ptr().wrapping_add(block.cell_size);
        state.limit = block.base.addr().get() + block.capacity_end();
        state.current = Some(self.blocks.len());
        self.blocks.push(block);
        cell.cast()
    }

    /// Records how far the class bumped into its current block before it moves on.
    fn retire_current(&mut self, class: usize) {
        let state = &self.classes[class];
        if let Some(index) = state.current {
            let block = &mut self.blocks[index];
            block.end = state.cursor.addr() - block.base.addr().get();
        }
    }

    /// Puts a freed cell of `cell_size` bytes on its class's free list.
    ///
    /// # Safety
    /// `cell` must be a cell of one of this space's blocks of that size, already marked freed,
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

    pub(crate) fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// The cells handed out so far in block `index`.
    pub(crate) fn cells_of(&self, index: usize) -> CellRange {
        let block = &self.blocks[index];
        let state = &self.classes[class_of(block.cell_size)];
        let end = if state.current == Some(index) {
            state.cursor.addr() - block.base.addr().get()
        } else {
            block.end
        };
        CellRange {
            base: block.base,
            cell_size: block.cell_size,
            next: CELLS_START,
            end,
        }
    }

    /// Every cell handed out so far, block by block.
    pub(crate) fn cells(&self) -> impl Iterator<Item = NonNull<Header>> + '_ {
        (0..self.blocks.len()).flat_map(|index| self.cells_of(index))
    }
}
