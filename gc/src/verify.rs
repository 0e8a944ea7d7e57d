//! The heap verifier, a debug tool in the spirit of Lua's `lua_checkmemory`: walk every cell,
//! trace every object with a recording tracer, and check each reported handle before anything
//! reads through it. [`Heap::verify`](crate::Heap::verify) is the entry point.

use std::collections::BTreeMap;
use std::ptr::NonNull;

use crate::block::{CellRange, Space};
use crate::cell::{class_size, payload, Header, NUM_CLASSES};
use crate::trace::{Edge, Tracer};

/// Checks the heap made of `space`, which should hold `objects` allocated objects.
pub(crate) fn check(
    space: &Space,
    objects: usize,
    roots: &mut dyn FnMut(&mut Tracer),
) -> Result<(), String> {
    let map = RunMap::new(space);
    let mut tracer = Tracer::recording();
    roots(&mut tracer);
    map.check_edges(&tracer.take_edges(), || "a root".to_owned())?;
    let mut found = 0;
    for cell in space.cells() {
        // SAFETY: `cells` yields only cells handed out in the heap's blocks, whose headers are
        // initialised; the heap is borrowed shared, so nobody writes them meanwhile.
        let header = unsafe { cell.read() };
        if header.vtable.is_freed() {
            continue;
        }
        found += 1;
        if header.marked {
            return Err(format!(
                "{} is still marked outside a collection (an interrupted collection?)",
                describe(cell)
            ));
        }
        // SAFETY: the cell holds a valid object of the vtable's type; the heap is borrowed
        // shared, so no `&mut` to it exists.
        unsafe { (header.vtable.trace)(cell, &mut tracer) };
        map.check_edges(&tracer.take_edges(), || describe(cell))?;
    }
    if found != objects {
        return Err(format!(
            "the heap counts {objects} objects but its blocks hold {found}"
        ));
    }
    map.check_free_lists(space)
}

/// "object at 0x… (Type)" for error messages.
fn describe(cell: NonNull<Header>) -> String {
    // SAFETY: only called on cells `RunMap::locate` or `Space::cells` produced, whose headers
    // are initialised.
    let header = unsafe { cell.read() };
    format!(
        "object at {:#x} ({})",
        cell.addr().get(),
        (header.vtable.type_name)()
    )
}

/// The heap's runs by start address, to locate an arbitrary address without reading it.
struct RunMap {
    runs: BTreeMap<usize, CellRange>,
    total_cells: usize,
}

impl RunMap {
    fn new(space: &Space) -> RunMap {
        let ranges = (0..space.run_count()).map(|index| space.cells_of(index));
        let runs: BTreeMap<usize, CellRange> =
            ranges.map(|range| (range.start_addr(), range)).collect();
        let total_cells = runs.values().map(|range| range.clone().count()).sum();
        RunMap { runs, total_cells }
    }

    /// The handed-out cell starting at `addr`, or why `addr` is not one.
    fn locate(&self, addr: usize) -> Result<(NonNull<Header>, usize), &'static str> {
        let (_, range) = self
            .runs
            .range(..=addr)
            .next_back()
            .ok_or("outside this heap's runs")?;
        let cell = range
            .cell_at(addr)
            .ok_or("not the start of a cell handed out by this heap")?;
        Ok((cell, range.cell_size()))
    }

    /// Checks handles reported by the object (or root set) `holder` names.
    fn check_edges(&self, edges: &[Edge], holder: impl Fn() -> String) -> Result<(), String> {
        for edge in edges {
            let problem =
                |why: &str| format!("{} holds a handle to {:#x}, {why}", holder(), edge.addr);
            let (cell, _) = self.locate(edge.addr).map_err(&problem)?;
            // SAFETY: `locate` found a handed-out cell of this heap: its header is initialised.
            let vtable = unsafe { cell.read() }.vtable;
            if vtable.is_freed() {
                return Err(problem(
                    "which is a freed cell: some object or root does not trace it",
                ));
            }
            if let Some((type_id, type_name)) = edge.expected {
                if vtable.type_id != type_id {
                    return Err(problem(&format!(
                        "typed {type_name} but the cell holds a {}",
                        (vtable.type_name)()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks every free list holds only freed cells of its class, without cycles.
    fn check_free_lists(&self, space: &Space) -> Result<(), String> {
        for class in 0..NUM_CLASSES {
            let mut next = space.free_list(class);
            let mut length = 0;
            while let Some(cell) = next {
                let problem = |why: &str| {
                    format!(
                        "free list of {}-byte cells: entry {:#x} {why}",
                        class_size(class),
                        cell.addr()
                    )
                };
                let (cell, cell_size) = self.locate(cell.addr().get()).map_err(&problem)?;
                // SAFETY: `locate` found a handed-out cell of this heap: its header is
                // initialised.
                if !unsafe { cell.read() }.vtable.is_freed() {
                    return Err(problem("is not a freed cell"));
                }
                if cell_size != class_size(class) {
                    return Err(problem("is in a run of another size class"));
                }
                length += 1;
                if length > self.total_cells {
                    return Err(problem("is part of a cycle"));
                }
                // SAFETY: a freed cell on a free list holds its link in its payload.
                next = unsafe { payload::<Option<NonNull<Header>>>(cell).read() };
            }
        }
        Ok(())
    }
}
