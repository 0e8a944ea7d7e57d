//! Unit tests of the heap through its public API (plus `CellLayout`, to size allocations
//! exactly in the pacing tests).

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::cell::CellLayout;
use crate::{Gc, GcAny, Heap, HeapConfig, Liveness, Trace, Tracer};

/// Counts the drops of the objects holding one of its tokens.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicUsize>);

impl Counter {
    fn token(&self) -> Token {
        Token(self.0.clone())
    }

    fn drops(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A linked-list node.
struct Node {
    next: Option<Gc<Node>>,
    value: i64,
    _token: Option<Token>,
}

impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer) {
        if let Some(next) = self.next {
            tracer.mark(next);
        }
    }
}

/// Same cell size as `Node`, different type.
struct Other([u64; 3]);

impl Trace for Other {
    fn trace(&self, _tracer: &mut Tracer) {}
}

/// A weak reference to a node.
struct Weak {
    target: Option<Gc<Node>>,
}

impl Trace for Weak {
    fn trace(&self, _tracer: &mut Tracer) {}

    const HAS_WEAK: bool = true;

    fn update_weak(&mut self, liveness: &Liveness) {
        if self.target.is_some_and(|target| !liveness.is_live(target)) {
            self.target = None;
        }
    }
}

/// Holds a node but breaks rule 1 by not tracing it.
struct Hidden {
    _target: Gc<Node>,
}

impl Trace for Hidden {
    fn trace(&self, _tracer: &mut Tracer) {}
}

/// An object owning a buffer outside its cell.
struct Buffer(Vec<u8>);

impl Trace for Buffer {
    fn trace(&self, _tracer: &mut Tracer) {}

    fn external_bytes(&self) -> usize {
        self.0.capacity()
    }
}

/// Panics while being traced when armed.
struct Panicky {
    armed: Arc<AtomicBool>,
    next: Gc<Node>,
}

impl Trace for Panicky {
    fn trace(&self, tracer: &mut Tracer) {
        assert!(!self.armed.load(Ordering::SeqCst), "armed");
        tracer.mark(self.next);
    }
}

struct Unit;

impl Trace for Unit {
    fn trace(&self, _tracer: &mut Tracer) {}
}

/// Shrinks loop counts under Miri, which is slow.
fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        (n / 500).max(4)
    } else {
        n
    }
}

fn node(heap: &mut Heap, value: i64, next: Option<Gc<Node>>, counter: &Counter) -> Gc<Node> {
    heap.alloc(Node {
        next,
        value,
        _token: Some(counter.token()),
    })
}

/// A list of `len` nodes with values `0..len` (the head holds 0).
fn list(heap: &mut Heap, len: usize, counter: &Counter) -> Gc<Node> {
    let mut head = None;
    for value in (0..len).rev() {
        head = Some(node(heap, value as i64, head, counter));
    }
    head.expect("non-empty list")
}

/// The length of a list whose neighbouring values differ by one.
fn list_len(heap: &Heap, head: Gc<Node>) -> usize {
    let mut len = 1;
    let mut at = head;
    while let Some(next) = at.get(heap).next {
        assert_eq!(next.get(heap).value.abs_diff(at.get(heap).value), 1);
        len += 1;
        at = next;
    }
    len
}

fn no_roots() -> impl FnMut(&mut Tracer) {
    |_: &mut Tracer| {}
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

fn verified(config: HeapConfig) -> Heap {
    Heap::new(HeapConfig {
        verify: true,
        ..config
    })
}

#[test]
fn handles_are_small_and_heaps_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Heap>();
    assert_send::<Gc<Node>>();
    assert_eq!(std::mem::size_of::<Gc<Node>>(), 8);
    assert_eq!(std::mem::size_of::<Option<Gc<Node>>>(), 8);
    assert_eq!(std::mem::size_of::<GcAny>(), 8);
}

#[test]
fn allocated_objects_read_back_and_mutate() {
    let mut heap = verified(HeapConfig::default());
    let counter = Counter::default();
    let a = node(&mut heap, 1, None, &counter);
    let b = node(&mut heap, 2, Some(a), &counter);
    let unit = heap.alloc(Unit);
    assert_eq!(b.get(&heap).value, 2);
    assert!(Gc::ptr_eq(b.get(&heap).next.unwrap(), a));
    a.get_mut(&mut heap).value = 10;
    assert_eq!(a.get(&heap).value, 10);
    assert_ne!(a, b);
    assert_ne!(a.addr(), b.addr());
    assert_eq!(a.erase().addr(), a.addr());
    assert!(format!("{a:?}").starts_with("Gc(0x"));
    let set: HashSet<Gc<Node>> = [a, b, a].into_iter().collect();
    assert_eq!(set.len(), 2);
    assert_eq!(heap.stats().objects, 3);
    heap.collect(&mut |tracer| {
        tracer.mark(b);
        tracer.mark(unit);
    });
    assert_eq!(a.get(&heap).value, 10);
    assert_eq!(counter.drops(), 0);
}

#[test]
fn downcast_checks_the_type() {
    let mut heap = Heap::new(HeapConfig::default());
    let counter = Counter::default();
    let any = node(&mut heap, 7, None, &counter).erase();
    assert_eq!(any.downcast::<Node>(&heap).unwrap().get(&heap).value, 7);
    assert!(any.downcast::<Other>(&heap).is_none());
    heap.collect(&mut no_roots());
    assert!(any.downcast::<Node>(&heap).is_none());
}

#[test]
fn unreachable_objects_are_dropped_and_reachable_ones_survive() {
    let mut heap = verified(HeapConfig::default());
    let counter = Counter::default();
    let all: Vec<Gc<Node>> = (0..100)
        .map(|i| node(&mut heap, i, None, &counter))
        .collect();
    let kept: Vec<GcAny> = all.iter().step_by(2).map(|gc| gc.erase()).collect();
    heap.collect(&mut |tracer| kept.iter().for_each(|&gc| tracer.mark_any(gc)));
    assert_eq!(counter.drops(), 50);
    assert_eq!(heap.stats().objects, 50);
    for (i, gc) in all.iter().enumerate().step_by(2) {
        assert_eq!(gc.get(&heap).value, i as i64);
    }
}

#[test]
fn cycles_are_collected() {
    let mut heap = verified(HeapConfig::default());
    let counter = Counter::default();
    let a = node(&mut heap, 1, None, &counter);
    let b = node(&mut heap, 2, Some(a), &counter);
    a.get_mut(&mut heap).next = Some(b);
    heap.collect(&mut |tracer| tracer.mark(a));
    assert_eq!(counter.drops(), 0);
    heap.collect(&mut no_roots());
    assert_eq!(counter.drops(), 2);
    assert_eq!(heap.stats().objects, 0);
}

#[test]
fn deep_chains_are_marked_without_recursion() {
    let len = scaled(1_000_000);
    let mut heap = Heap::new(HeapConfig::default());
    let counter = Counter::default();
    let head = list(&mut heap, len, &counter);
    heap.collect(&mut |tracer| tracer.mark(head));
    assert_eq!(counter.drops(), 0);
    assert_eq!(list_len(&heap, head), len);
    heap.collect(&mut no_roots());
    assert_eq!(counter.drops(), len);
}

#[test]
fn weak_references_follow_their_target() {
    let mut heap = verified(HeapConfig::default());
    let counter = Counter::default();
    let kept = node(&mut heap, 1, None, &counter);
    let lost = node(&mut heap, 2, None, &counter);
    let to_kept = heap.alloc(Weak { target: Some(kept) });
    let to_lost = heap.alloc(Weak { target: Some(lost) });
    let roots = [kept.erase(), to_kept.erase(), to_lost.erase()];
    heap.collect(&mut |tracer| roots.iter().for_each(|&gc| tracer.mark_any(gc)));
    assert_eq!(to_kept.get(&heap).target, Some(kept));
    assert_eq!(to_lost.get(&heap).target, None);
    assert_eq!(counter.drops(), 1);
    // A dead weak holder is forgotten, and the heap stays consistent.
    heap.collect(&mut |tracer| tracer.mark(kept));
    heap.collect(&mut |tracer| tracer.mark(kept));
    assert_eq!(heap.stats().objects, 1);
}

#[test]
fn freed_cells_are_reused() {
    let mut heap = verified(HeapConfig::default());
    let counter = Counter::default();
    let rounds = scaled(50);
    let mut blocks = Vec::new();
    for round in 0..rounds {
        let keep = list(&mut heap, scaled(2000), &counter);
        heap.alloc(Buffer(Vec::new()));
        heap.collect(&mut |tracer| tracer.mark(keep));
        blocks.push(heap.stats().blocks);
        assert_eq!(list_len(&heap, keep), scaled(2000), "round {round}");
    }
    assert!(
        blocks.windows(2).skip(1).all(|w| w[0] == w[1]),
        "{blocks:?}"
    );
}

#[test]
fn stale_handles_panic_instead_of_reading_garbage() {
    let mut heap = Heap::new(HeapConfig::default());
    let counter = Counter::default();
    let stale = node(&mut heap, 1, None, &counter);
    heap.collect(&mut no_roots());
    let freed = catch_unwind(AssertUnwindSafe(|| stale.get(&heap).value));
    assert!(panic_message(freed.unwrap_err()).contains("kiln-gc: stale or mistyped Gc handle"));

    // The free list is LIFO, so the next object of the same cell size reuses the cell.
    let other = heap.alloc(Other([1, 2, 3]));
    assert_eq!(other.addr(), stale.addr());
    assert_eq!(other.get(&heap).0, [1, 2, 3]);
    let reused = catch_unwind(AssertUnwindSafe(|| stale.get_mut(&mut heap).value));
    assert!(panic_message(reused.unwrap_err()).contains("stale or mistyped"));
}

#[test]
fn handles_of_another_heap_are_refused() {
    let mut first = Heap::new(HeapConfig::default());
    let mut second = verified(HeapConfig::default());
    let counter = Counter::default();
    let foreign = node(&mut first, 1, None, &counter);
    let local = node(&mut second, 2, None, &counter);
    let read = catch_unwind(AssertUnwindSafe(|| foreign.get(&second).value));
    assert!(panic_message(read.unwrap_err()).contains("did not allocate it"));
    let marked = catch_unwind(AssertUnwindSafe(|| {
        second.collect(&mut |tracer| {
            tracer.mark(local);
            tracer.mark(foreign);
        })
    }));
    assert!(panic_message(marked.unwrap_err()).contains("did not allocate it"));
    second.collect(&mut |tracer| tracer.mark(local));
    assert_eq!(local.get(&second).value, 2);
    assert_eq!(foreign.get(&first).value, 1);
}

#[test]
fn a_collection_cut_short_by_a_panic_leaves_a_usable_heap() {
    let mut heap = verified(HeapConfig::default());
    let counter = Counter::default();
    let armed = Arc::new(AtomicBool::new(true));
    let target = node(&mut heap, 1, None, &counter);
    let bystander = node(&mut heap, 2, None, &counter);
    let panicky = heap.alloc(Panicky {
        armed: armed.clone(),
        next: target,
    });
    // The mark stack is LIFO: `bystander` is marked, then tracing `panicky` panics.
    let result = catch_unwind(AssertUnwindSafe(|| {
        heap.collect(&mut |tracer| {
            tracer.mark(bystander);
            tracer.mark(panicky);
        })
    }));
    assert!(panic_message(result.unwrap_err()).contains("armed"));
    assert!(heap
        .verify(&mut no_roots())
        .unwrap_err()
        .contains("still marked"));
    armed.store(false, Ordering::SeqCst);
    // The stale mark on `bystander` must not keep it alive.
    heap.collect(&mut |tracer| tracer.mark(panicky));
    assert_eq!(counter.drops(), 1);
    assert_eq!(panicky.get(&heap).next.get(&heap).value, 1);
}

#[test]
fn pacing_threshold_grows_with_the_live_size() {
    let cell = CellLayout::of::<Node>().size;
    let min_threshold = 100 * cell;
    let mut heap = Heap::new(HeapConfig {
        min_threshold,
        pause_percent: 100,
        ..HeapConfig::default()
    });
    let counter = Counter::default();
    let alloc_garbage = |heap: &mut Heap, n: usize| {
        for _ in 0..n {
            node(heap, 0, None, &counter);
        }
    };
    // Nothing live yet: the threshold is the minimum.
    alloc_garbage(&mut heap, 99);
    assert!(!heap.collection_due(0));
    alloc_garbage(&mut heap, 1);
    assert!(heap.collection_due(0));

    for live in [300, 600] {
        let head = list(&mut heap, live, &counter);
        heap.collect(&mut |tracer| tracer.mark(head));
        assert_eq!(heap.stats().heap_bytes, live * cell);
        assert!(!heap.collection_due(0));
        alloc_garbage(&mut heap, live - 1);
        assert!(!heap.collection_due(0), "live {live}");
        alloc_garbage(&mut heap, 1);
        assert!(heap.collection_due(0), "live {live}");
    }

    let stats = heap.stats();
    assert_eq!(stats.collections, 2);
    assert!(stats.max_pause_us >= stats.last_pause_us);
    assert_eq!(
        stats.total_allocated_bytes,
        (100 + 300 + 300 + 600 + 600) * cell as u64
    );
}

#[test]
fn stress_mode_collects_after_every_allocation() {
    let mut heap = Heap::new(HeapConfig {
        stress: NonZeroU32::new(1),
        verify: true,
        ..HeapConfig::default()
    });
    let counter = Counter::default();
    assert!(!heap.collection_due(0));
    let mut head = None;
    for value in 0..scaled(1000) as i64 {
        // The owner's slow path: every allocation asks `admit` in stress mode.
        assert!(heap.should_collect_for(1));
        heap.admit().unwrap();
        assert!(heap.collection_due(0));
        heap.collect(&mut |tracer| {
            if let Some(h) = head {
                tracer.mark(h)
            }
        });
        assert!(!heap.collection_due(0));
        head = Some(node(&mut heap, value, head, &counter));
    }
    assert_eq!(counter.drops(), 0);
    assert_eq!(list_len(&heap, head.unwrap()), scaled(1000));
}

#[test]
fn stress_mode_can_collect_every_nth_allocation() {
    let mut heap = Heap::new(HeapConfig {
        stress: NonZeroU32::new(3),
        ..HeapConfig::default()
    });
    let due: Vec<bool> = (0..7)
        .map(|_| {
            heap.admit().unwrap();
            let due = heap.collection_due(0);
            if due {
                heap.collect(&mut |_| {});
            }
            due
        })
        .collect();
    assert_eq!(due, [false, false, true, false, false, true, false]);
}

#[test]
fn verify_reports_an_untraced_reference() {
    let mut heap = Heap::new(HeapConfig::default());
    let counter = Counter::default();
    let target = node(&mut heap, 1, None, &counter);
    let holder = heap.alloc(Hidden { _target: target });
    heap.verify(&mut |tracer| tracer.mark(holder))
        .expect("healthy before the collection");
    heap.collect(&mut |tracer| tracer.mark(holder));
    assert_eq!(counter.drops(), 1);
    // `Hidden` reports nothing, so the dangling handle is seen when a root names it.
    let problem = heap.verify(&mut |tracer| tracer.mark(target)).unwrap_err();
    assert!(problem.contains("a root holds a handle"), "{problem}");
    assert!(problem.contains("freed cell"), "{problem}");

    // After reuse by another type, the handle is reported as mistyped.
    heap.alloc(Other([0; 3]));
    let problem = heap.verify(&mut |tracer| tracer.mark(target)).unwrap_err();
    assert!(problem.contains("Other"), "{problem}");
}

#[test]
fn verify_reports_a_freed_cell_held_by_an_object() {
    let mut heap = Heap::new(HeapConfig::default());
    let counter = Counter::default();
    let target = node(&mut heap, 1, None, &counter);
    // Sweeping pushes `filler`'s cell last, so `parent` reuses it and `target` stays free.
    let filler = node(&mut heap, 0, None, &counter);
    heap.collect(&mut no_roots());
    let parent = node(&mut heap, 2, Some(target), &counter);
    assert_eq!(parent.addr(), filler.addr());
    let problem = heap.verify(&mut |tracer| tracer.mark(parent)).unwrap_err();
    assert!(
        problem.contains("(kiln_gc::tests::Node) holds a handle"),
        "{problem}"
    );
    assert!(problem.contains("freed cell"), "{problem}");
    // Marking refuses to resurrect the freed cell.
    let result = catch_unwind(AssertUnwindSafe(|| {
        heap.collect(&mut |tracer| tracer.mark(parent));
    }));
    assert!(panic_message(result.unwrap_err()).contains("stale or mistyped"));
}

#[test]
fn a_verifying_collection_panics_on_a_mistyped_root() {
    let mut heap = verified(HeapConfig::default());
    let counter = Counter::default();
    let stale = node(&mut heap, 1, None, &counter);
    heap.collect(&mut no_roots());
    let other = heap.alloc(Other([0; 3]));
    assert_eq!(other.addr(), stale.addr());
    // Marking accepts the handle (its cell is allocated); the verifier sees the type is wrong.
    let result = catch_unwind(AssertUnwindSafe(|| {
        heap.collect(&mut |tracer| tracer.mark(stale));
    }));
    let message = panic_message(result.unwrap_err());
    assert!(message.contains("heap verification failed"), "{message}");
    assert!(message.contains("typed kiln_gc::tests::Node"), "{message}");
}

#[test]
fn external_bytes_are_accounted() {
    let mut heap = Heap::new(HeapConfig::default());
    let cell = CellLayout::of::<Buffer>().size;
    let buffer = heap.alloc(Buffer(Vec::with_capacity(1000)));
    assert_eq!(heap.stats().heap_bytes, cell + 1000);
    heap.account(500);
    assert_eq!(heap.stats().heap_bytes, cell + 1500);
    heap.account(-200);
    assert_eq!(heap.stats().heap_bytes, cell + 1300);
    assert_eq!(heap.stats().total_allocated_bytes, (cell + 1500) as u64);

    // A collection measures survivors again.
    buffer.get_mut(&mut heap).0.reserve_exact(3000);
    let capacity = buffer.get(&heap).0.capacity();
    heap.collect(&mut |tracer| tracer.mark(buffer));
    assert_eq!(heap.stats().heap_bytes, cell + capacity);
    heap.collect(&mut no_roots());
    assert_eq!(heap.stats().heap_bytes, 0);
    heap.account(-10);
    assert_eq!(heap.stats().heap_bytes, 0);
}

#[test]
fn dropping_the_heap_runs_every_destructor_once() {
    let counter = Counter::default();
    {
        let mut heap = Heap::new(HeapConfig::default());
        let head = list(&mut heap, 10, &counter);
        list(&mut heap, 5, &counter);
        heap.collect(&mut |tracer| tracer.mark(head));
        assert_eq!(counter.drops(), 5);
        list(&mut heap, 3, &counter);
    }
    assert_eq!(counter.drops(), 18);
}

/// An object of `N` bytes of payload, to reach a chosen size class.
struct Sized<const N: usize>([u8; N]);

impl<const N: usize> Trace for Sized<N> {
    fn trace(&self, _tracer: &mut Tracer) {}
}

#[test]
fn a_small_heap_keeps_every_size_class_in_one_block() {
    let mut heap = verified(HeapConfig::default());
    let a = heap.alloc(Sized([1; 16]));
    let b = heap.alloc(Sized([2; 100]));
    let c = heap.alloc(Sized([3; 300]));
    let d = heap.alloc(Sized([4; 496]));
    assert_eq!(heap.stats().blocks, 1);
    heap.collect(&mut |tracer| {
        tracer.mark(a);
        tracer.mark(b);
        tracer.mark(c);
        tracer.mark(d);
    });
    assert_eq!((a.get(&heap).0[0], d.get(&heap).0[495]), (1, 4));
}

#[test]
fn a_large_heap_grows_its_runs_to_whole_blocks() {
    let mut heap = verified(HeapConfig::default());
    let counter = Counter::default();
    let len = scaled(20_000);
    let keep = list(&mut heap, len, &counter);
    let cell = CellLayout::of::<Node>().size;
    // Runs double up to a whole block, so at most a few blocks are partly used.
    let whole_blocks = len * cell / (64 * 1024);
    assert!(
        heap.stats().blocks <= whole_blocks + 2,
        "{:?}",
        heap.stats()
    );
    heap.collect(&mut |tracer| tracer.mark(keep));
    assert_eq!(list_len(&heap, keep), len);
}

/// What an owner does before allocating `value`, as the VM does: the fast-path compare, then
/// on the slow path the hook, a collection if due, and the limit.
fn alloc_as_owner<T: Trace>(
    heap: &mut Heap,
    value: T,
    roots: &mut dyn FnMut(&mut Tracer),
) -> Result<Gc<T>, crate::Refused> {
    let cost = Heap::cost_of(&value);
    if heap.should_collect_for(cost) {
        heap.admit()?;
        if heap.collection_due(cost) {
            heap.collect(roots);
        }
        if !heap.fits(cost) {
            return Err(crate::Refused::OverLimit);
        }
    }
    heap.try_alloc(value)
}

#[test]
fn the_byte_limit_counts_live_bytes_only_and_refuses_past_it() {
    let limit = 64 * 1024;
    let mut heap = Heap::new(HeapConfig {
        max_bytes: Some(limit),
        ..HeapConfig::default()
    });
    // Far more garbage than the limit, each buffer dropped at once: every allocation fits,
    // because the trigger makes the owner collect before the limit is reached.
    for _ in 0..1000 {
        let buffer = Buffer(vec![0; 1000]);
        alloc_as_owner(&mut heap, buffer, &mut |_| {}).expect("garbage is collected first");
        assert!(heap.stats().heap_bytes <= limit);
    }
    // Live data: refused once the next buffer would not fit, and the heap stays within it.
    let mut live: Vec<Gc<Buffer>> = Vec::new();
    let refused = loop {
        let kept = live.clone();
        let mut roots = |t: &mut Tracer| kept.iter().for_each(|b| t.mark(*b));
        match alloc_as_owner(&mut heap, Buffer(vec![0; 1000]), &mut roots) {
            Ok(b) => live.push(b),
            Err(why) => break why,
        }
    };
    assert_eq!(refused, crate::Refused::OverLimit);
    assert!(heap.stats().heap_bytes <= limit);
    assert!(live.len() > 50, "{}", live.len());
}

#[test]
fn the_failure_hook_refuses_exactly_the_chosen_allocation() {
    let mut heap = Heap::new(HeapConfig {
        fail_allocation: Some(3),
        ..HeapConfig::default()
    });
    let counter = Counter::default();
    let outcomes: Vec<bool> = (0..5)
        .map(|v| {
            let n = Node {
                next: None,
                value: v,
                _token: Some(counter.token()),
            };
            alloc_as_owner(&mut heap, n, &mut |_| {}).is_ok()
        })
        .collect();
    assert_eq!(outcomes, [true, true, false, true, true]);
    // The refused value was dropped, not leaked.
    assert_eq!(counter.drops(), 1);
    assert_eq!(heap.stats().objects, 4);
}

#[test]
fn a_released_heap_accounts_for_every_object_and_block() {
    let mut heap = Heap::new(HeapConfig::default());
    let counter = Counter::default();
    // Enough nodes to fill more than one block, even under Miri.
    let n = 2 * crate::block::BLOCK_SIZE / std::mem::size_of::<Node>();
    let head = list(&mut heap, n, &counter);
    heap.alloc(Buffer(vec![0; 100_000]));
    heap.collect(&mut |t| t.mark(head));
    heap.alloc(Buffer(vec![0; 1000]));
    assert!(heap.stats().blocks > 1);
    let last = heap.release();
    assert_eq!(counter.drops(), n);
    assert_eq!((last.objects, last.heap_bytes, last.blocks), (0, 0, 0));
}
