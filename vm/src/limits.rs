//! What a host may bound besides fuel: memory, sizes, tasks, and the clock scripts see;
//! and the checks every growth path makes before it builds anything.
//!
//! These are the knobs of the embedding API (`kiln::Engine`), kept here because the VM,
//! the heap and the scheduler enforce them. Every limit, once reached, stops the run
//! with its own uncatchable [`crate::Limit`]; a script cannot catch its way past one.
//! That holds for the size caps too (decided so that each limit is one distinct error
//! kind a host can match on, and so that a script cannot spin on a refused doubling):
//! `string too large`, `array too large` and `map too large` are `Limit::Size`.
//! What stays catchable is `out of memory`: the allocator itself refusing, which no
//! host chose. The defaults are the CLI's: no heap or task bound, and size caps far
//! above what a sane script builds but below what would abort the process.
//!
//! Enforcement: a string, array or map is checked against its cap and the heap limit
//! *before* its storage is grown ([`Vm::grow_array`], [`Vm::grow_map`]) or, when the
//! result can dwarf the operands, built ([`Vm::room_for_string`]), so a refused
//! operation has allocated nothing; the constructors (`Vm::new_string`, `new_array`,
//! `new_map`) check the caps of everything else, and `Vm::alloc` counts an object's
//! buffer against the heap limit. [`Vm::reserve`] is a safe point like [`Vm::alloc`].
//! Compiled code never allocates (it exits to the interpreter first), so these checks
//! cover every tier.

use std::sync::Arc;
use std::time::Duration;

use kiln_gc::Gc;

use crate::error::{Collection, Fault, Limit};
use crate::value::{Array, Map, Value, ENTRY_BYTES};
use crate::vm::Vm;

/// Resource limits of one run (each task of the run gets the same ones).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Bytes a task's heap may hold (live plus not yet collected garbage, after a
    /// collection has had its chance); `None` for no bound.
    pub heap_bytes: Option<usize>,
    /// Tasks alive at once, the main one included; `None` for no bound.
    pub max_tasks: Option<usize>,
    /// Longest string, in bytes, that any operation may build.
    pub max_string_bytes: usize,
    /// Most elements an array may hold.
    pub max_array_len: usize,
    /// Most entries a map may hold.
    pub max_map_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            heap_bytes: None,
            max_tasks: None,
            max_string_bytes: 1 << 30,
            max_array_len: 1 << 27,
            max_map_len: 1 << 27,
        }
    }
}

/// The time source behind `sleep`, `select` timeouts and `time.now`-style builtins: the
/// wall clock by default, or a host's tick counter so a game can replay a run exactly.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time since an arbitrary fixed origin; never decreases.
    fn now(&self) -> Duration;
}

/// A shared clock handle, as [`crate::Settings`] holds it.
pub type SharedClock = Arc<dyn Clock>;

/// Bytes one array element takes in its buffer.
const ELEMENT_BYTES: usize = std::mem::size_of::<Value>();

impl Vm {
    /// Makes room for a string of `len` bytes about to be built: its cap, then the heap.
    /// For operations whose result can be much larger than their operands (`repeat`,
    /// `+`, interpolation); the string constructors check the cap again in any case.
    pub fn room_for_string(&mut self, len: usize) -> Result<(), Fault> {
        self.check_size(Collection::String, len)?;
        Ok(self.reserve(len)?)
    }

    /// Fails with [`Limit::Size`] when a `what` of `len` would pass its cap.
    #[inline]
    pub fn check_size(&self, what: Collection, len: usize) -> Result<(), Fault> {
        let l = &self.settings.limits;
        let cap = match what {
            Collection::String => l.max_string_bytes,
            Collection::Array => l.max_array_len,
            Collection::Map => l.max_map_len,
        };
        if len > cap {
            Err(Fault::Limit(Limit::Size(what)))
        } else {
            Ok(())
        }
    }

    /// Makes room for `more` elements in `arr` (`push`, `insert`, literals): its cap, the
    /// heap for the whole growth step, then the buffer itself; the growth is accounted.
    /// Afterwards `more` pushes do not reallocate.
    #[inline(never)]
    pub fn grow_array(&mut self, arr: Gc<Array>, more: usize) -> Result<(), Fault> {
        let items = &arr.get(&self.heap).items;
        let (len, cap) = (items.len(), items.capacity());
        let Some(room) = self.plan_growth(Collection::Array, len, cap, more, ELEMENT_BYTES)? else {
            return Ok(());
        };
        let items = &mut arr.get_mut(&mut self.heap).items;
        items.try_reserve_exact(room).map_err(|_| out_of_memory())?;
        let grew = items.capacity() - cap;
        self.heap
            .account(signed(grew.saturating_mul(ELEMENT_BYTES)));
        Ok(())
    }

    /// Makes room for `more` entries in `m` (`m[k] = v`, literals), as [`Vm::grow_array`].
    #[inline(never)]
    pub fn grow_map(&mut self, m: Gc<Map>, more: usize) -> Result<(), Fault> {
        let entries = &m.get(&self.heap).entries;
        let (len, cap) = (entries.len(), entries.capacity());
        let Some(room) = self.plan_growth(Collection::Map, len, cap, more, ENTRY_BYTES)? else {
            return Ok(());
        };
        let entries = &mut m.get_mut(&mut self.heap).entries;
        entries.try_reserve(room).map_err(|_| out_of_memory())?;
        let grew = entries.capacity().saturating_sub(cap);
        self.heap.account(signed(grew.saturating_mul(ENTRY_BYTES)));
        Ok(())
    }

    /// The checks before a collection holding `len` of `cap` elements of `unit` bytes
    /// takes `more`: its cap, then the heap for the whole growth step (a safe point).
    /// Returns how many elements to reserve room for, if the buffer must grow.
    fn plan_growth(
        &mut self,
        what: Collection,
        len: usize,
        cap: usize,
        more: usize,
        unit: usize,
    ) -> Result<Option<usize>, Fault> {
        let want = len.saturating_add(more);
        self.check_size(what, want)?;
        if want <= cap {
            return Ok(None);
        }
        let new_cap = grown(cap, want);
        self.reserve((new_cap - cap).saturating_mul(unit))?;
        Ok(Some(new_cap - len))
    }
}

/// The capacity a collection of capacity `cap` grows to when it needs `want`: doubling,
/// as `Vec` does, so pushes stay amortised O(1).
fn grown(cap: usize, want: usize) -> usize {
    want.max(cap.saturating_mul(2)).max(4)
}

/// A byte count as the signed delta `Heap::account` takes.
fn signed(bytes: usize) -> isize {
    isize::try_from(bytes).unwrap_or(isize::MAX)
}

/// The catchable error of an allocator that refused.
pub fn out_of_memory() -> Fault {
    Fault::Error("out of memory".into())
}
