//! The contract between generated code and Rust: the signature of compiled functions,
//! the context they share, and the layouts they read in place.
//!
//! A compiled proto is one machine function
//!
//! ```text
//! extern "C" fn(ctx: *mut JitCtx, regs: *mut Value, closure: u64, module: u64,
//!               module_vars: *mut Value, entry: u64) -> u32
//! ```
//!
//! `regs` is the frame's register window (`regs[-1]` is the callee slot, which receives
//! the return value). `closure` and `module` are the payloads of the frame's closure and
//! module values. `entry` packs the pc to start at (low 32 bits: 0 or a loop header)
//! and how many more compiled calls may nest (high 32 bits), so every argument travels
//! in a register. It returns
//! [`RETURNED`] or [`EXITED`]; on an exit `ctx.exit_pc` says where the innermost stopped
//! frame resumes, and `ctx.shadow[..ctx.shadow_len]` lists the compiled calls that were
//! in progress, innermost first.
//!
//! Calls record nothing on the way in: a callee that exits returns [`EXITED`], and each
//! compiled caller on the way out stores its typed registers and appends its call to
//! the shadow list. The fast path of a call is the call.

use std::mem::offset_of;

use kiln_vm::value::{tag, Array, Closure, Instance, ModuleObj, StructType, Value};

/// The function returned; its value is in `regs[-1]`.
pub const RETURNED: u32 = 0;
/// The function stopped; the interpreter resumes (see the module docs).
pub const EXITED: u32 = 1;
/// Set in `exit_pc` when the exit is at an instruction compiled code does not handle
/// (expected), rather than a failed guard (a speculation that went wrong).
pub const EXPECTED_EXIT: i64 = 1 << 32;
/// Set in `exit_pc` when the exit is because the fuel grant ran out (see
/// `kiln_vm::fuel`): neither a failure nor a reason to stop compiling.
pub const FUEL_EXIT: i64 = 1 << 33;
/// For a failed type guard, `exit_pc` carries the checked register plus one from this
/// bit on, so the tier can look at the value that broke the speculation.
pub const EXIT_REG_SHIFT: u32 = 40;

/// State shared by every compiled frame of one entry from the interpreter.
#[repr(C)]
pub struct JitCtx {
    /// One past the last register slot that compiled calls may use.
    pub stack_end: *mut Value,
    /// Steps left in the VM's fuel grant; copied back when the code returns or exits.
    pub fuel: i64,
    /// The VM's built-in values, in `kiln_vm::builtins::GLOBALS` order.
    pub builtins: *const Value,
    /// Where the innermost stopped frame resumes.
    pub exit_pc: u64,
    /// Calls in progress, innermost first, appended as exits unwind (capacity: the
    /// initial `depth_left` plus one).
    pub shadow: *mut Shadow,
    pub shadow_len: u64,
}

/// One compiled call in progress.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Shadow {
    /// Where the caller resumes (the instruction after its `Call`).
    pub resume_pc: u64,
    /// The callee's register window.
    pub regs: *mut Value,
    /// The callee value (a `Value::Func`), copied bit for bit.
    pub closure: Value,
    /// The callee's proto id.
    pub proto: u64,
}

pub const VALUE_SIZE: i32 = std::mem::size_of::<Value>() as i32;
/// Offset of the payload in a `Value` (the tag is the first byte).
pub const PAYLOAD: i32 = 8;

pub const TAG_NIL: i64 = tag::NIL as i64;
pub const TAG_BOOL: i64 = tag::BOOL as i64;
pub const TAG_INT: i64 = tag::INT as i64;
pub const TAG_FLOAT: i64 = tag::FLOAT as i64;
pub const TAG_FUNC: i64 = tag::FUNC as i64;
pub const TAG_ARRAY: i64 = tag::ARRAY as i64;
pub const TAG_STRUCT: i64 = tag::STRUCT as i64;
pub const TAG_UNDEF: i64 = tag::UNDEF as i64;

/// Where an instance's struct declaration key is, from the instance handle's address.
pub const INSTANCE_KEY: i32 = (kiln_gc::PAYLOAD_OFFSET + offset_of!(Instance, key)) as i32;
/// A field cache word that matches no type (see [`field_cache_fill`]).
pub const EMPTY_CACHE: u64 = u64::MAX;
/// Bits of a field cache word below the type key: the field's slot.
pub const CACHE_SLOT_BITS: i64 = 16;

/// Where an instance's field array pointer is, from the instance handle's address, if
/// this build lays out a boxed slice as the probe expects (data pointer, length).
pub fn instance_fields() -> Option<i32> {
    let probe: Box<[Value]> = vec![Value::Nil; 3].into_boxed_slice();
    let data = probe.as_ptr() as usize;
    // SAFETY: a `Box<[T]>` is two words (pointer and length, in an order Rust does not
    // promise); reading them as two `usize`s reads initialised memory of that size.
    let words: [usize; 2] = unsafe { std::mem::transmute_copy(&probe) };
    let at = match words {
        [p, 3] if p == data => 0,
        [3, p] if p == data => 8,
        _ => return None,
    };
    Some((kiln_gc::PAYLOAD_OFFSET + offset_of!(Instance, fields) + at) as i32)
}

/// Where an array's element pointer and length are, from the array handle's address,
/// if this build lays out a `Vec` as three words the probe can tell apart.
pub fn array_items() -> Option<ArrayLayout> {
    let mut probe: Vec<Value> = Vec::with_capacity(5);
    probe.extend([Value::Nil, Value::Nil]);
    let data = probe.as_ptr() as usize;
    // SAFETY: a `Vec<T>` is three words (pointer, capacity, length, in an order Rust
    // does not promise); reading them as three `usize`s reads initialised memory of
    // that size.
    let words: [usize; 3] = unsafe { std::mem::transmute_copy(&probe) };
    let at = |want: usize| words.iter().position(|&w| w == want);
    let (ptr, len) = (at(data)?, at(2)?);
    let base = kiln_gc::PAYLOAD_OFFSET + offset_of!(Array, items);
    Some(ArrayLayout {
        ptr: (base + ptr * 8) as i32,
        len: (base + len * 8) as i32,
    })
}

/// Offsets of an array's element pointer and length from its handle's address.
#[derive(Clone, Copy, Debug)]
pub struct ArrayLayout {
    pub ptr: i32,
    pub len: i32,
}

/// Where a closure's proto id is, from the closure handle's address.
pub const CLOSURE_PROTO: i32 = (kiln_gc::PAYLOAD_OFFSET + offset_of!(Closure, proto)) as i32;
/// Where a closure's module handle is, from the closure handle's address.
pub const CLOSURE_MODULE: i32 = (kiln_gc::PAYLOAD_OFFSET + offset_of!(Closure, module)) as i32;

pub const CTX_STACK_END: i32 = offset_of!(JitCtx, stack_end) as i32;
pub const CTX_FUEL: i32 = offset_of!(JitCtx, fuel) as i32;
pub const CTX_BUILTINS: i32 = offset_of!(JitCtx, builtins) as i32;
pub const CTX_EXIT_PC: i32 = offset_of!(JitCtx, exit_pc) as i32;
pub const CTX_SHADOW: i32 = offset_of!(JitCtx, shadow) as i32;
pub const CTX_SHADOW_LEN: i32 = offset_of!(JitCtx, shadow_len) as i32;
/// The depth field of the `entry` argument (see the module docs).
pub const DEPTH_ONE: i64 = 1 << 32;

pub const SHADOW_SIZE: i64 = std::mem::size_of::<Shadow>() as i64;
pub const SHADOW_RESUME: i32 = offset_of!(Shadow, resume_pc) as i32;
pub const SHADOW_REGS: i32 = offset_of!(Shadow, regs) as i32;
pub const SHADOW_CLOSURE: i32 = offset_of!(Shadow, closure) as i32;
pub const SHADOW_PROTO: i32 = offset_of!(Shadow, proto) as i32;

/// Returns the variables of a module (a `Value::Module` payload) for compiled code that
/// calls into another module's function.
///
/// # Safety
/// `module` must be the address of a live `ModuleObj` cell (the payload of a
/// `Value::Module` or a closure's module handle), with no Rust reference to it alive.
pub unsafe extern "C" fn module_vars(module: u64) -> *mut Value {
    let obj = (module as usize + kiln_gc::PAYLOAD_OFFSET) as *mut ModuleObj;
    // SAFETY: the caller guarantees `module` is a live module cell, whose object starts
    // PAYLOAD_OFFSET bytes in; we only take the address of its variables' buffer.
    unsafe { (*obj).vars.as_mut_ptr() }
}

/// The slot of field `name` in instance `obj`, or -1 (compiled code exits and the
/// interpreter raises the error or checks the annotation). Remembers the slot in
/// `cache` (a word of `(type key << 16) | slot`) for the instance's type when the type
/// has a key and, for a write (`write` non-zero), the field has no annotation.
///
/// # Safety
/// `obj` is the address of a live `Instance` cell (the caller checked its tag); `name`
/// and `len` describe a string constant of the running program; `cache` points to a
/// live `AtomicU64` owned by the code. No Rust reference to these objects is alive
/// while compiled code runs. It does not allocate, so no collection can start.
pub unsafe extern "C" fn field_cache_fill(
    obj: u64,
    name: *const u8,
    len: usize,
    cache: *const std::sync::atomic::AtomicU64,
    write: u32,
) -> i64 {
    let inst = (obj as usize + kiln_gc::PAYLOAD_OFFSET) as *const Instance;
    // SAFETY: `obj` is a live instance cell whose type handle is a live type cell;
    // `name`/`len` are a string constant's bytes (valid UTF-8); `cache` is live.
    unsafe {
        let ty = &*(((*inst).ty.addr() + kiln_gc::PAYLOAD_OFFSET) as *const StructType);
        let name = std::str::from_utf8_unchecked(std::slice::from_raw_parts(name, len));
        let Some(i) = ty.field_index(name) else {
            return -1;
        };
        let annotated = ty.field_types[i].is_some();
        if write != 0 && annotated {
            return -1;
        }
        if ty.key != 0 && i < 1 << CACHE_SLOT_BITS {
            (*cache).store(
                (ty.key << CACHE_SLOT_BITS) | i as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        i as i64
    }
}

/// libm functions compiled code calls for `math.sin` etc.
pub extern "C" fn sin(x: f64) -> f64 {
    x.sin()
}
pub extern "C" fn cos(x: f64) -> f64 {
    x.cos()
}
pub extern "C" fn exp(x: f64) -> f64 {
    x.exp()
}
pub extern "C" fn ln(x: f64) -> f64 {
    x.ln()
}

/// `a % b` for floats with the divisor's sign (Cranelift has no `fmod`).
pub extern "C" fn float_mod(a: f64, b: f64) -> f64 {
    kiln_vm::ops::float_mod(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tags compiled code writes must be the ones Rust reads. Values are built by
    /// Rust here and their first byte inspected.
    #[test]
    fn value_layout_matches_the_constants() {
        fn bytes(v: Value) -> [u8; 16] {
            // SAFETY: Value is 16 bytes, Copy, and every byte pattern of a [u8; 16] is
            // valid; we only read the representation.
            unsafe { std::mem::transmute::<Value, [u8; 16]>(v) }
        }
        assert_eq!(bytes(Value::Nil)[0] as i64, TAG_NIL);
        assert_eq!(bytes(Value::Bool(true))[0] as i64, TAG_BOOL);
        assert_eq!(bytes(Value::Bool(true))[PAYLOAD as usize], 1);
        let i = bytes(Value::Int(-5));
        assert_eq!(i[0] as i64, TAG_INT);
        assert_eq!(i64::from_le_bytes(i[8..].try_into().unwrap()), -5);
        let f = bytes(Value::Float(1.5));
        assert_eq!(f[0] as i64, TAG_FLOAT);
        assert_eq!(f64::from_le_bytes(f[8..].try_into().unwrap()), 1.5);
        assert_eq!(bytes(Value::Undef)[0] as i64, TAG_UNDEF);
    }
}
