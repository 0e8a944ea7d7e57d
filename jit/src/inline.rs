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
//! because old code is correct, and the caller's code unit keeps the unit of the
//! variant it calls mapped (see `code`).
//!
//! Bodies are kept by the variant's symbol name, as IR of the module it was compiled
//! in. Helper ids are the same in every module; the body's calls of itself are renamed
//! to the id the caller's module gives the variant.

use std::borrow::Cow;
use std::collections::HashMap;

use cranelift_codegen::inline::{Inline, InlineCommand};
use cranelift_codegen::ir::{self, ExternalName, Opcode, UserExternalName};
use cranelift_codegen::Context;
use cranelift_module::FuncId;

use crate::params::MAX_INLINED_INSTS;

/// A body that may be inlined: the IR, and the id it calls itself by.
struct Body {
    func: ir::Function,
    own: u32,
}

/// The bodies of the direct variants that may be inlined, by symbol name.
#[derive(Default)]
pub struct Bodies {
    by_name: HashMap<String, Body>,
}

impl Bodies {
    /// Keeps `func` (the body of direct variant `name`, function `fid` of its module)
    /// if it is short and calls only itself and functions for which `helper` holds.
    pub fn offer(
        &mut self,
        name: &str,
        fid: FuncId,
        func: &ir::Function,
        helper: impl Fn(u32) -> bool,
    ) {
        let own = fid.as_u32();
        if is_small_and_closed(func, |f| helper(f) || f == own) {
            let body = Body {
                func: func.clone(),
                own,
            };
            self.by_name.insert(name.to_string(), body);
        }
    }

    /// Direct variant `name` was replaced: callers compiled from now on call the new one.
    pub fn forget(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    /// Whether calls of `name` are inlined.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Inlines every direct call in `ctx`'s function of a body kept here; `calls`
    /// names the variant behind function ids of the caller's module.
    pub fn inline_into(
        &self,
        ctx: &mut Context,
        calls: &HashMap<u32, String>,
    ) -> Result<bool, String> {
        let inliner = Inliner {
            bodies: &self.by_name,
            calls,
        };
        ctx.inline(inliner).map_err(|e| format!("inlining: {e:?}"))
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

struct Inliner<'a> {
    bodies: &'a HashMap<String, Body>,
    calls: &'a HashMap<u32, String>,
}

impl Inline for Inliner<'_> {
    fn inline(
        &mut self,
        caller: &ir::Function,
        _call: ir::Inst,
        opcode: Opcode,
        callee: ir::FuncRef,
        _args: &[ir::Value],
    ) -> InlineCommand<'_> {
        let fid = (opcode == Opcode::Call)
            .then(|| callee_index(caller, callee))
            .flatten();
        let body = fid.and_then(|f| Some((f, self.bodies.get(self.calls.get(&f)?)?)));
        match body {
            Some((fid, body)) if fid == body.own => InlineCommand::Inline {
                callee: Cow::Borrowed(&body.func),
                visit_callee: false,
            },
            Some((fid, body)) => InlineCommand::Inline {
                callee: Cow::Owned(renamed(&body.func, body.own, fid)),
                visit_callee: false,
            },
            None => InlineCommand::KeepCall,
        }
    }
}

/// `func` with its calls of function `from` turned into calls of `to`.
fn renamed(func: &ir::Function, from: u32, to: u32) -> ir::Function {
    let mut f = func.clone();
    let refs: Vec<_> = f
        .params
        .user_named_funcs()
        .iter()
        .filter(|(_, n)| n.namespace == 0 && n.index == from)
        .map(|(r, _)| r)
        .collect();
    for r in refs {
        f.params
            .reset_user_func_name(r, UserExternalName::new(0, to));
    }
    f
}
