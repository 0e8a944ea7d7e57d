//! `kiln disasm`: a readable listing of a program's bytecode with source lines.

use std::fmt::Write;

use crate::bytecode::{Format, Op};
use crate::program::{Constant, Program, Proto};

/// Lists every proto of the program's user modules (the prelude is left out).
pub fn disassemble(program: &Program) -> String {
    let mut out = String::new();
    for (i, p) in program.protos.iter().enumerate() {
        if program.prelude.is_some_and(|m| p.module == m) {
            continue;
        }
        proto(&mut out, i, p);
    }
    out
}

fn proto(out: &mut String, index: usize, p: &Proto) {
    let (line, _) = p.source.line_col(p.span.start);
    let _ = writeln!(
        out,
        "fn {} (proto {index}, {}:{line}) params={} required={}{}{} regs={} consts={} upvals={}",
        p.name,
        p.source.name,
        p.nparams,
        p.nrequired,
        if p.has_rest { " rest" } else { "" },
        if p.has_self { " self" } else { "" },
        p.max_regs,
        p.consts.len(),
        p.upvals.len(),
    );
    let mut last_line = 0;
    for (pc, ins) in p.code.iter().enumerate() {
        let (line, _) = p.position(pc);
        let line_col = if line != last_line {
            last_line = line;
            format!("{line:>5}")
        } else {
            "    |".to_string()
        };
        let _ = write!(out, "  {pc:>4} {line_col}  {ins:?}");
        if let Some(note) = annotate(p, pc) {
            let _ = write!(out, "    ; {note}");
        }
        out.push('\n');
    }
    for (i, c) in p.consts.iter().enumerate() {
        let _ = writeln!(out, "  K{i} = {}", constant(c));
    }
    out.push('\n');
}

/// A comment that makes an instruction readable: the constant or jump target it uses.
fn annotate(p: &Proto, pc: usize) -> Option<String> {
    let ins = p.code[pc];
    let op = ins.op()?;
    let k = |i: usize| p.consts.get(i).map(constant);
    match op {
        Op::LoadK => k(ins.bx()),
        Op::AddK | Op::SubK | Op::MulK | Op::DivK | Op::IDivK | Op::ModK | Op::PowK => k(ins.c()),
        Op::TestEqK | Op::TestLtK | Op::TestLeK | Op::TestGtK | Op::TestGeK => k(ins.b()),
        Op::GetField | Op::CallMethod | Op::AddMethod => k(ins.c()),
        Op::SetField => k(ins.b()),
        _ => match op.format() {
            Format::SJ => Some(format!("to {}", pc as isize + 1 + ins.sj())),
            Format::AsBx if op != Op::LoadI => Some(format!("to {}", pc as isize + 1 + ins.sbx())),
            _ => None,
        },
    }
}

fn constant(c: &Constant) -> String {
    match c {
        Constant::Int(i) => i.to_string(),
        Constant::Float(f) => crate::display::format_float(*f),
        Constant::Str(s) => format!("{s:?}"),
    }
}
