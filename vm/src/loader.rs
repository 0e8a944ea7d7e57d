//! Loading: source text to a compiled module graph.
//!
//! Imports are resolved at compile time: compiling a module compiles every file it
//! imports first (depth first), so a whole program is compiled before any of it runs
//! and an import cycle is a compile error naming the chain. Each file is compiled once;
//! importing it again reuses its module.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::compiler::ReplScope;
use crate::error::Diagnostic;
use crate::program::{ModuleId, Program};
use crate::source::SourceFile;
use crate::vm::Capabilities;

/// The Kiln source of script-level built-in methods (`map`, `filter`, `sort_by`...).
const PRELUDE: &str = include_str!("prelude.kn");

/// The prelude's file name in traces.
pub const PRELUDE_NAME: &str = "<prelude>";

/// Compiles modules into a [`Program`].
pub struct Loader<'p> {
    pub(crate) program: &'p mut Program,
    caps: Capabilities,
    /// Files being compiled, outermost first (for cycle reports).
    in_progress: Vec<(PathBuf, String)>,
    loaded: HashMap<PathBuf, ModuleId>,
}

impl<'p> Loader<'p> {
    /// A loader over `program`; compiles the prelude into it if it is new.
    pub fn new(program: &'p mut Program, caps: Capabilities) -> Loader<'p> {
        let mut l = Loader {
            program,
            caps,
            in_progress: Vec::new(),
            loaded: HashMap::new(),
        };
        if l.program.prelude.is_none() {
            let id = l
                .compile_source(PRELUDE_NAME, PRELUDE, PRELUDE_NAME)
                .unwrap_or_else(|d| panic!("the built-in prelude does not compile: {d:?}"));
            l.program.prelude = Some(id);
        }
        l
    }

    /// Compiles `text` (named `name` in messages) as a program's entry module.
    pub fn compile_main(&mut self, name: &str, text: &str) -> Result<ModuleId, Vec<Diagnostic>> {
        if let Ok(p) = std::fs::canonicalize(name) {
            self.in_progress.push((p, file_label(name)));
        }
        let r = self.compile_source(name, text, "<main>");
        self.in_progress.clear();
        r
    }

    /// Compiles `text` as a module of its own whose top level returns the value of a
    /// final expression statement (a host's `eval`).
    pub fn compile_eval(&mut self, name: &str, text: &str) -> Result<ModuleId, Vec<Diagnostic>> {
        let source = SourceFile::new(name, text);
        let module = self.parse(&source)?;
        let scope = ReplScope::default();
        crate::compiler::compile_module(self, &module, source, "<eval>", Some(&scope))
    }

    /// Compiles one REPL line as a continuation of `scope`'s module.
    pub fn compile_repl_line(
        &mut self,
        text: &str,
        scope: &ReplScope,
    ) -> Result<ModuleId, Vec<Diagnostic>> {
        let source = SourceFile::new("<repl>", text);
        let module = self.parse(&source)?;
        crate::compiler::compile_module(self, &module, source, "<main>", Some(scope))
    }

    fn parse(&self, source: &Arc<SourceFile>) -> Result<crate::ast::Module, Vec<Diagnostic>> {
        crate::parser::parse(&source.text).map_err(|errs| {
            errs.into_iter()
                .map(|e| Diagnostic::new(e.message, Some((source.clone(), e.span))))
                .collect::<Vec<_>>()
        })
    }

    fn compile_source(
        &mut self,
        name: &str,
        text: &str,
        display: &str,
    ) -> Result<ModuleId, Vec<Diagnostic>> {
        let source = SourceFile::new(name, text);
        let module = self.parse(&source)?;
        crate::compiler::compile_module(self, &module, source, display, None)
    }

    /// Compiles (or reuses) the module at `rel`, relative to the importing file.
    pub(crate) fn import_file(
        &mut self,
        from: &SourceFile,
        rel: &str,
    ) -> Result<ModuleId, Vec<Diagnostic>> {
        let shown = normalize(
            &Path::new(&from.name)
                .parent()
                .unwrap_or(Path::new(""))
                .join(rel),
        );
        let shown_str = shown.to_string_lossy().into_owned();
        let refuse = |why: String| {
            vec![Diagnostic::new(
                format!("cannot import \"{rel}\": {why}"),
                None,
            )]
        };
        if !self.caps.fs {
            return Err(refuse("the host did not grant file access".into()));
        }
        let canon = std::fs::canonicalize(&shown).map_err(|e| refuse(e.to_string()))?;
        if let Some(root) = &self.caps.fs_root {
            crate::stdlib::fs::confined(root, &canon).map_err(refuse)?;
        }
        if let Some(&id) = self.loaded.get(&canon) {
            return Ok(id);
        }
        // Each nested import is a level of recursion in the compiler.
        const MAX_IMPORT_DEPTH: usize = 200;
        if self.in_progress.len() >= MAX_IMPORT_DEPTH {
            return Err(vec![Diagnostic::new(
                format!("imports nested too deep (more than {MAX_IMPORT_DEPTH} files)"),
                None,
            )]);
        }
        if let Some(pos) = self.in_progress.iter().position(|(p, _)| *p == canon) {
            let mut chain: Vec<&str> = self.in_progress[pos..]
                .iter()
                .map(|(_, n)| n.as_str())
                .collect();
            let label = file_label(&shown_str);
            chain.push(&label);
            return Err(vec![Diagnostic::new(
                format!("import cycle: {}", chain.join(" -> ")),
                None,
            )]);
        }
        let bytes = std::fs::read(&shown).map_err(|e| {
            vec![Diagnostic::new(
                format!("cannot import \"{rel}\": {e}"),
                None,
            )]
        })?;
        let text = decode_source(&shown_str, bytes).map_err(|d| vec![d])?;
        let stem = shown
            .file_stem()
            .map_or_else(|| shown_str.clone(), |s| s.to_string_lossy().into_owned());
        self.in_progress
            .push((canon.clone(), file_label(&shown_str)));
        let r = self.compile_source(&shown_str, &text, &stem);
        self.in_progress.pop();
        let id = r?;
        self.loaded.insert(canon, id);
        Ok(id)
    }

    /// A standard or host module's `ImportStd` index and member names, if it exists and
    /// is granted.
    pub(crate) fn std_module(&self, name: &str) -> Option<(u16, Vec<Arc<str>>)> {
        let std = crate::stdlib::STD_MODULES;
        let Some(idx) = std.iter().position(|m| *m == name) else {
            let host = self.host()?;
            let m = host.module(name)?;
            let names = host.modules[m].members.iter().map(|f| f.name.clone());
            return Some((u16::try_from(std.len() + m).ok()?, names.collect()));
        };
        self.granted(name)
            .then(|| (idx as u16, crate::stdlib::members(idx)))
    }

    /// What the host registered, if anything.
    pub(crate) fn host(&self) -> Option<&crate::host::HostRegistry> {
        self.caps.host.as_deref()
    }

    fn granted(&self, name: &str) -> bool {
        match name {
            "fs" => self.caps.fs,
            "os" => self.caps.os,
            "time" => self.caps.time,
            _ => true,
        }
    }

    /// Why `import name` failed.
    pub(crate) fn std_refusal(&self, name: &str) -> String {
        if crate::stdlib::STD_MODULES.contains(&name) {
            format!("module `{name}` is not available: the host did not grant it")
        } else {
            format!("unknown module `{name}` (to import a file, write: import {name} from \"./{name}.kn\")")
        }
    }
}

/// Source text from a file's bytes; bytes that are not UTF-8 are a positioned compile
/// error (at the first bad byte).
pub fn decode_source(name: &str, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let file = SourceFile::new(name, text);
        Diagnostic::new(
            "invalid UTF-8 in source file",
            Some((file, crate::source::Span::new(at, at + 1))),
        )
    })
}

/// The file name shown in import-cycle messages.
fn file_label(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Removes `.` components and folds `dir/..` so names in traces read naturally.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
