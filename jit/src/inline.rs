//! Inlining of small leaf functions into their compiled callers.
//!
//! A call costs a compiled caller more than a small callee's whole body: the machine
//! call, the callee's prologue saving callee-saved registers, the arguments in fixed
//! registers, the status and type word coming back. So the direct variant of a proto
//! that is short and calls nothing but itself is kept as IR, and Cranelift's inlining
//! library (`cranelift_codegen::inline`) copies it into each caller's direct calls
//! before the caller is optimised. Nothing changes in meaning: the inlined body still
//! stores its registers into the callee's window and returns [`crate::abi::EXITED`]
//! when it stops, and the caller's code after the call handles that as it did for the
//! out-of-line call.
//!
//! A recursive body is inlined one level deep (its own calls stay calls), so a proto
//! like fib makes half as many machine calls. Its recursive call checks less than an
//! outside caller's would (not that the code is still compiled); that stays sound
//! because old code is correct and code memory lives as long as the tier.

use std::borrow::Cow;
use std::collections::HashMap;

use cranelift_codegen::inline::{Inline, InlineCommand};
use cranelift_codegen::ir::{self, ExternalName, Opcode};
use cranelift_codegen::Context;
use cranelift_module::FuncId;

use crate::params::MAX_INLINED_INSTS;

/// The bodies of the direct variants that may be inlined, by function id.
#[derive(Default)]
pub struct Bodies {
    by_func: HashMap<u32, ir::Function>,
}

impl Bodies {
    /// Keeps `func` (the body of direct variant `fid`) if it is short and calls only
    /// itself and functions for which `helper` holds.
    pub fn offer(&mut self, fid: FuncId, func: &ir::Function, helper: impl Fn(u32) -> bool) {
        if is_small_and_closed(func, |f| helper(f) || f == fid.as_u32()) {
            self.by_func.insert(fid.as_u32(), func.clone());
        }
    }

    /// Direct variant `fid` was replaced: callers compiled from now on call the new one.
    pub fn forget(&mut self, fid: FuncId) {
        self.by_func.remove(&fid.as_u32());
    }

    /// Whether calls of `fid` are inlined.
    pub fn has(&self, fid: FuncId) -> bool {
        self.by_func.contains_key(&fid.as_u32())
    }

    /// Inlines every direct call in `ctx`'s function of a body kept here.
    pub fn inline_into(&self, ctx: &mut Context) -> Result<bool, String> {
        ctx.inline(Inliner(&self.by_func))
            .map_err(|e| format!("inlining: {e:?}"))
    }
}

/// Whether `func` is at most [`MAX_INLINED_INSTS`] long and makes only direct calls
/// of functions `allowed` accepts.
fn is_small_and_closed(func: &ir::Function, allowed: impl Fn(u32) -> bool) -> bool {
    let mut count = 0;
    for block in func.layout.blocks() {
        for inst in func.layout.block_insts(block) {
            count += 1;
            let data = &func.dfg.insts[inst];
            if !data.opcode().is_call() {
                continue;
            }
            let Some(callee) = (match data {
                ir::InstructionData::Call { func_ref, .. } => callee_index(func, *func_ref),
                _ => None,
            }) else {
                return false;
            };
            if !allowed(callee) {
                return false;
            }
        }
    }
    count <= MAX_INLINED_INSTS
}

/// The module function id `func_ref` names (`cranelift_module` names functions by
/// id in namespace 0).
fn callee_index(func: &ir::Function, func_ref: ir::FuncRef) -> Option<u32> {
    match &func.dfg.ext_funcs[func_ref].name {
        ExternalName::User(r) => {
            let name = &func.params.user_named_funcs()[*r];
            (name.namespace == 0).then_some(name.index)
        }
        _ => None,
    }
}

struct Inliner<'a>(&'a HashMap<u32, ir::Function>);

impl Inline for Inliner<'_> {
    fn inline(
        &mut self,
        caller: &ir::Function,
        _call: ir::Inst,
        opcode: Opcode,
        callee: ir::FuncRef,
        _args: &[ir::Value],
    ) -> InlineCommand<'_> {
        let body = (opcode == Opcode::Call)
            .then(|| callee_index(caller, callee))
            .flatten()
            .and_then(|i| self.0.get(&i));
        match body {
            Some(f) => InlineCommand::Inline {
                callee: Cow::Borrowed(f),
                visit_callee: false,
            },
            None => InlineCommand::KeepCall,
        }
    }
}
