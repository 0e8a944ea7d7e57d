//! The parser: turns tokens into the syntax tree of [`crate::ast`].
//!
//! Hand-written recursive descent. Binary operators are parsed with an explicit operator
//! stack and prefix operators with a loop, so that long chains (`1 + 1 + ...`) cost no
//! Rust stack. Two pieces of context steer parsing: whether a line break ends an
//! expression here (not inside `( )`, `[ ]`, map braces or `${ }`), and whether `Name {`
//! may open a struct literal (not in `if`/`while`/`for` headers).
//!
//! Nesting is capped at [`MAX_DEPTH`] so that hostile input cannot overflow the Rust
//! stack, and so is the height of the tree built ([`MAX_HEIGHT`]): chains parse as loops
//! but nest in the tree, and chains inside the operands of chains would otherwise
//! multiply (`((a + … + a) + … + a) + …` is as deep as all its operators together).
//! The functions a nested construct recurses through are kept small (dispatchers
//! only make tail calls; the work lives in helpers that are not on the stack while the
//! recursion happens), because every temporary counts in a debug build's stack frame.
//! Measured at the maximum depth, the worst construct needs about 1.5 MB of stack in a
//! debug build and 0.75 MB in a release build (`deepest_allowed_nesting_fits_the_stack`).
//!
//! Errors are collected rather than thrown. A failing construct records its error and
//! returns `Reported`; the statement loop then restores the context, skips to the next
//! statement boundary and goes on, so one pass reports every error it can.

use crate::ast::{
    BinOp, Block, Expr, ExprKind, FieldDecl, FnDecl, ImplDecl, Import, ImportKind, InterpPart,
    MapKey, Module, Name, Param, Stmt, StmtKind, StructDecl, TypeAnn, UnOp,
};
use crate::lexer::{self, Tok, Token};
use crate::source::Span;

/// A compile error found while lexing or parsing, with the offending text's position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Short and lowercase: "expected `)` after arguments, found `}`".
    pub message: String,
    /// The offending token or construct.
    pub span: Span,
}

/// How deeply constructs may nest (parentheses, brackets, blocks, statements, prefix
/// operators, `**` exponents). Deep enough for any real program, shallow enough for the
/// parser — and the compiler after it — to recurse safely.
pub const MAX_DEPTH: usize = 200;

/// Most operators (or postfix calls, indexes and fields) in one unbroken chain. Chains
/// parse as loops, but they build left-leaning trees that the compiler walks
/// recursively, so their length is a nesting depth in disguise.
pub const MAX_CHAIN: usize = 2000;

/// How tall a statement's syntax tree may grow: nesting levels plus the links of the
/// operator, postfix and `else if` chains along any path from the statement down. The
/// compiler walks the tree recursively, so this bounds its stack; a single chain of
/// [`MAX_CHAIN`] links fits with room for nesting around it.
pub const MAX_HEIGHT: usize = MAX_CHAIN + 500;

/// After this many errors (from the lexer, and from the parser) the rest of the file is
/// skipped: later ones are mostly noise.
pub(crate) const MAX_ERRORS: usize = 100;

/// Parses a whole file. Reports every error it can in one pass (recovering at statement
/// boundaries), sorted by position. An error at the end of the input starts with
/// "unexpected end of file", which a REPL can take to mean "incomplete input".
pub fn parse(src: &str) -> Result<Module, Vec<SyntaxError>> {
    let (tokens, mut errors) = lexer::lex(src);
    let mut parser = Parser::new(tokens);
    let (stmts, _) = parser.stmt_list(true);
    errors.append(&mut parser.errors);
    if errors.is_empty() {
        return Ok(Module { stmts });
    }
    errors.sort_by_key(|e| e.span.start);
    errors.dedup_by_key(|e| e.span.start);
    errors.truncate(MAX_ERRORS);
    Err(errors)
}

/// Marks an error that is already recorded in `Parser::errors`: unwind to the statement
/// loop, which recovers.
struct Reported;

type PResult<T> = Result<T, Reported>;

/// A binary operator as the operator-precedence loop sees it.
#[derive(Clone, Copy, PartialEq)]
enum Infix {
    Logical { and: bool },
    Bin(BinOp),
    Range { inclusive: bool },
}

/// A lambda parameter's default stops before `|`, which closes the parameter list.
const PREC_BIT_OR: u8 = 5;
const PREC_RANGE: u8 = 9;

impl Infix {
    /// Binding power, lowest first (LANGUAGE.md "Operators").
    fn prec(self) -> u8 {
        match self {
            Infix::Logical { and: false } => 1,
            Infix::Logical { and: true } => 2,
            Infix::Bin(BinOp::Eq | BinOp::Ne) => 3,
            Infix::Bin(BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge) => 4,
            Infix::Bin(BinOp::BitOr) => PREC_BIT_OR,
            Infix::Bin(BinOp::BitXor) => 6,
            Infix::Bin(BinOp::BitAnd) => 7,
            Infix::Bin(BinOp::Shl | BinOp::Shr) => 8,
            Infix::Range { .. } => PREC_RANGE,
            Infix::Bin(BinOp::Add | BinOp::Sub) => 10,
            Infix::Bin(BinOp::Mul | BinOp::Div | BinOp::IntDiv | BinOp::Mod) => 11,
            // Tighter than the prefixes; `power` parses it, not the operator loop.
            Infix::Bin(BinOp::Pow) => 12,
        }
    }

    fn build(self, lhs: Expr, rhs: Expr) -> Expr {
        let span = lhs.span.to(rhs.span);
        let (lhs, rhs) = (Box::new(lhs), Box::new(rhs));
        let kind = match self {
            Infix::Logical { and } => ExprKind::Logical { and, lhs, rhs },
            Infix::Bin(op) => ExprKind::Binary { op, lhs, rhs },
            Infix::Range { inclusive } => ExprKind::Range {
                start: lhs,
                end: rhs,
                inclusive,
            },
        };
        Expr { kind, span }
    }
}

fn infix_of(tok: &Tok) -> Option<Infix> {
    let op = match tok {
        Tok::OrOr => return Some(Infix::Logical { and: false }),
        Tok::AndAnd => return Some(Infix::Logical { and: true }),
        Tok::DotDot => return Some(Infix::Range { inclusive: false }),
        Tok::DotDotEq => return Some(Infix::Range { inclusive: true }),
        Tok::EqEq => BinOp::Eq,
        Tok::NotEq => BinOp::Ne,
        Tok::Lt => BinOp::Lt,
        Tok::Le => BinOp::Le,
        Tok::Gt => BinOp::Gt,
        Tok::Ge => BinOp::Ge,
        Tok::Pipe => BinOp::BitOr,
        Tok::Caret => BinOp::BitXor,
        Tok::Amp => BinOp::BitAnd,
        Tok::Shl => BinOp::Shl,
        Tok::Shr => BinOp::Shr,
        Tok::Plus => BinOp::Add,
        Tok::Minus => BinOp::Sub,
        Tok::Star => BinOp::Mul,
        Tok::Slash => BinOp::Div,
        Tok::TildeSlash => BinOp::IntDiv,
        Tok::Percent => BinOp::Mod,
        _ => return None,
    };
    Some(Infix::Bin(op))
}

fn prefix_of(tok: &Tok) -> Option<UnOp> {
    match tok {
        Tok::Minus => Some(UnOp::Neg),
        Tok::Bang => Some(UnOp::Not),
        Tok::Tilde => Some(UnOp::BitNot),
        _ => None,
    }
}

/// `=` gives `Some(None)`, `+=` gives `Some(Some(Add))`, anything else `None`.
fn assign_op(tok: &Tok) -> Option<Option<BinOp>> {
    Some(match tok {
        Tok::Assign => None,
        Tok::PlusEq => Some(BinOp::Add),
        Tok::MinusEq => Some(BinOp::Sub),
        Tok::StarEq => Some(BinOp::Mul),
        Tok::SlashEq => Some(BinOp::Div),
        Tok::TildeSlashEq => Some(BinOp::IntDiv),
        Tok::PercentEq => Some(BinOp::Mod),
        _ => return None,
    })
}

/// After one of these a line break does not end the statement (the operand follows).
fn continues_on_next_line(tok: &Tok) -> bool {
    infix_of(tok).is_some()
        || assign_op(tok).is_some()
        || matches!(
            tok,
            Tok::Comma | Tok::LParen | Tok::LBracket | Tok::StarStar | Tok::Arrow
        )
}

/// For each opening token, the index of its closing token (`None` if unclosed or not an
/// opener). Recovery uses it to skip a whole bracketed group at once.
fn match_brackets(tokens: &[Token]) -> Vec<Option<usize>> {
    let mut partner = vec![None; tokens.len()];
    let mut open: Vec<usize> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let opener = match token.tok {
            Tok::LParen | Tok::LBracket | Tok::LBrace | Tok::StrStart | Tok::InterpOpen => {
                open.push(i);
                continue;
            }
            Tok::RParen => Tok::LParen,
            Tok::RBracket => Tok::LBracket,
            Tok::RBrace => Tok::LBrace,
            Tok::StrEnd => Tok::StrStart,
            Tok::InterpClose => Tok::InterpOpen,
            _ => continue,
        };
        if let Some(&o) = open.last().filter(|&&o| tokens[o].tok == opener) {
            partner[o] = Some(i);
            open.pop();
        }
    }
    partner
}

/// What a construct changes while it parses its parts, and puts back afterwards.
#[derive(Clone, Copy)]
struct Context {
    /// A line break ends the expression here (false inside `( )`, `[ ]`, map braces).
    nl_ends: bool,
    /// In an `if`/`while`/`for` header, where `Name {` opens the body, not a literal.
    no_struct: bool,
}

struct Parser {
    tokens: Vec<Token>,
    partner: Vec<Option<usize>>,
    pos: usize,
    errors: Vec<SyntaxError>,
    depth: usize,
    /// The deepest level (nesting depth plus chain links) reached inside the construct
    /// being measured; see [`Parser::measure_start`].
    peak: usize,
    /// Blocks currently open: imports are allowed only at zero.
    blocks: usize,
    ctx: Context,
}

impl Parser {
    fn new(tokens: Vec<Token>) -> Parser {
        Parser {
            partner: match_brackets(&tokens),
            tokens,
            pos: 0,
            errors: Vec::new(),
            depth: 0,
            peak: 0,
            blocks: 0,
            ctx: Context {
                nl_ends: true,
                no_struct: false,
            },
        }
    }

    // ----- token access -----

    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    /// The token `n` ahead (the final `Eof` beyond the end).
    fn peek_at(&self, n: usize) -> &Tok {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + n).min(last)].tok
    }

    fn span(&self) -> Span {
        self.tokens[self.pos].span
    }

    fn prev_span(&self) -> Span {
        self.tokens[self.pos.saturating_sub(1)].span
    }

    fn at(&self, tok: &Tok) -> bool {
        self.peek() == tok
    }

    /// A line break comes before the current token.
    fn nl_before(&self) -> bool {
        self.tokens[self.pos].nl_before
    }

    /// A line break before the current token ends the expression being parsed.
    fn line_break(&self) -> bool {
        self.ctx.nl_ends && self.nl_before()
    }

    fn bump(&mut self) -> Span {
        let span = self.span();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        span
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        let found = self.at(tok);
        if found {
            self.bump();
        }
        found
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> PResult<Span> {
        if self.at(tok) {
            Ok(self.bump())
        } else {
            self.expected(what)
        }
    }

    fn expect_ident(&mut self, what: &str) -> PResult<Name> {
        match self.ident_if_present() {
            Some(name) => Ok(name),
            None => self.expected(what),
        }
    }

    fn ident_if_present(&mut self) -> Option<Name> {
        let Tok::Ident(text) = self.peek() else {
            return None;
        };
        let text = text.clone();
        Some(Name {
            text,
            span: self.bump(),
        })
    }

    // ----- errors -----

    fn error(&mut self, span: Span, message: impl Into<String>) {
        // A failure usually unwinds through several constructs that would each complain
        // about the same token; the first complaint is the useful one.
        let repeated = self
            .errors
            .last()
            .is_some_and(|e| e.span.start == span.start);
        if !repeated && self.errors.len() < MAX_ERRORS {
            self.errors.push(SyntaxError {
                message: message.into(),
                span,
            });
        }
    }

    fn fail<T>(&mut self, span: Span, message: impl Into<String>) -> PResult<T> {
        self.error(span, message);
        Err(Reported)
    }

    /// "expected `)` after arguments, found `}`", or at the end of the input
    /// "unexpected end of file, expected ...".
    fn expected<T>(&mut self, what: &str) -> PResult<T> {
        self.report_expected(what);
        Err(Reported)
    }

    fn report_expected(&mut self, what: &str) {
        let message = match self.peek() {
            Tok::Eof => format!("unexpected end of file, expected {what}"),
            found => format!("expected {what}, found {}", found.describe()),
        };
        self.error(self.span(), message);
    }

    // ----- nesting and context -----

    /// Goes one nesting level deeper, refusing to pass [`MAX_DEPTH`]. Pair with
    /// [`Parser::leave`]; after an error the statement loop resets the depth instead.
    fn enter(&mut self) -> PResult<()> {
        if self.depth >= MAX_DEPTH {
            return self.fail(self.span(), "nesting too deep");
        }
        self.depth += 1;
        self.peak = self.peak.max(self.depth);
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Starts measuring how deep the construct parsed next reaches; returns the outer
    /// measurement, which [`Parser::measure_end`] resumes.
    fn measure_start(&mut self) -> usize {
        std::mem::replace(&mut self.peak, self.depth)
    }

    /// Ends a measurement: a chain of `links` links was built on top of everything
    /// parsed since [`Parser::measure_start`], pushing all of it that much deeper.
    /// Refuses a tree taller than [`MAX_HEIGHT`].
    fn measure_end(&mut self, outer: usize, links: usize) -> PResult<()> {
        let height = self.peak + links;
        self.peak = outer.max(height);
        if height > MAX_HEIGHT {
            return self.fail(self.prev_span(), "nesting too deep");
        }
        Ok(())
    }

    /// Replaces the context, returning the old one to put back (after an error the
    /// statement loop puts it back instead).
    fn set_context(&mut self, nl_ends: bool, no_struct: bool) -> Context {
        std::mem::replace(&mut self.ctx, Context { nl_ends, no_struct })
    }

    // ----- recovery -----

    /// Skips the rest of a statement that failed to parse. The end is searched from the
    /// statement's first token, jumping over bracketed groups, up to a `;`, a `}` that
    /// closes the enclosing block, or a line break where a statement can end.
    fn recover(&mut self, stmt_start: usize, top_level: bool) {
        let mut end = self.statement_end(stmt_start, top_level);
        if end <= self.pos {
            end = self.statement_end(self.pos, top_level);
        }
        self.pos = end;
    }

    fn statement_end(&self, from: usize, top_level: bool) -> usize {
        let mut i = from;
        while self.tokens[i].tok != Tok::Eof {
            if i > from && self.is_statement_boundary(i, top_level) {
                break;
            }
            i = self.partner[i].map_or(i + 1, |close| close + 1);
        }
        i
    }

    /// Could a statement end before token `i` (`i > 0`)?
    fn is_statement_boundary(&self, i: usize, top_level: bool) -> bool {
        let token = &self.tokens[i];
        match token.tok {
            Tok::Semi => true,
            Tok::RBrace => !top_level,
            Tok::Dot => false,
            _ => token.nl_before && !continues_on_next_line(&self.tokens[i - 1].tok),
        }
    }

    // ----- statements -----

    /// Statements up to `}` (not consumed) or the end of the file. Also returns whether
    /// the last one is an expression statement not followed by `;` (a block's value).
    fn stmt_list(&mut self, top_level: bool) -> (Vec<Stmt>, bool) {
        let mut stmts = Vec::new();
        let mut open_tail = false;
        loop {
            if self.errors.len() >= MAX_ERRORS {
                self.pos = self.tokens.len() - 1;
            }
            while self.eat(&Tok::Semi) {}
            match self.peek() {
                Tok::Eof => break,
                Tok::RBrace if !top_level => break,
                _ => {}
            }
            open_tail = false;
            let start = self.pos;
            if top_level && self.at(&Tok::RBrace) {
                self.error(self.span(), "unexpected `}`");
                self.recover(start, top_level);
                continue;
            }
            let saved = (self.depth, self.peak, self.blocks, self.ctx);
            let Ok((stmt, needs_end)) = self.stmt() else {
                (self.depth, self.peak, self.blocks, self.ctx) = saved;
                self.recover(start, top_level);
                continue;
            };
            let is_expr = matches!(stmt.kind, StmtKind::Expr(_));
            stmts.push(stmt);
            if self.at(&Tok::Semi) {
                continue;
            }
            let ends = matches!(self.peek(), Tok::RBrace | Tok::Eof) || self.nl_before();
            if needs_end && !ends {
                self.report_expected("newline or `;` after statement");
                self.recover(start, top_level);
                continue;
            }
            open_tail = is_expr;
        }
        (stmts, open_tail)
    }

    /// One statement, and whether it must be followed by a newline or `;` (those that end
    /// with a block need not be).
    fn stmt(&mut self) -> PResult<(Stmt, bool)> {
        let start = self.span();
        self.enter()?;
        let parsed = self.stmt_kind();
        self.leave();
        parsed.map(|(kind, needs_end)| {
            let span = start.to(self.prev_span());
            (Stmt { kind, span }, needs_end)
        })
    }

    /// Dispatches on the first token. Only calls in tail position here: a temporary in
    /// this frame would be on the stack for every nested statement.
    fn stmt_kind(&mut self) -> PResult<(StmtKind, bool)> {
        match self.peek() {
            Tok::Let | Tok::Const => self.let_stmt(),
            Tok::Fn if matches!(self.peek_at(1), Tok::Ident(_)) => self.fn_decl(),
            Tok::Struct => self.struct_decl(),
            Tok::Impl => self.impl_decl(),
            Tok::Import => self.import(),
            Tok::Return => self.return_stmt(),
            Tok::Break => self.keyword_stmt(StmtKind::Break),
            Tok::Continue => self.keyword_stmt(StmtKind::Continue),
            Tok::Throw => self.throw_stmt(),
            Tok::While => self.while_stmt(),
            Tok::Loop => self.loop_stmt(),
            Tok::For => self.for_stmt(),
            Tok::Defer | Tok::Errdefer => self.defer(),
            Tok::If | Tok::Try | Tok::LBrace => self.block_like_stmt(),
            _ => self.expr_or_assign(),
        }
    }

    /// `let x`, `let x: T = e`, `const X = e`.
    fn let_stmt(&mut self) -> PResult<(StmtKind, bool)> {
        let is_const = self.bump_is(&Tok::Const);
        let name = self.expect_ident(if is_const {
            "constant name after `const`"
        } else {
            "variable name after `let`"
        })?;
        let ty = self.type_suffix()?;
        let init = self.initializer()?;
        if is_const && init.is_none() {
            self.error(name.span, format!("constant `{}` needs a value", name.text));
        }
        let kind = StmtKind::Let {
            name,
            ty,
            init,
            is_const,
        };
        Ok((kind, true))
    }

    /// An optional `= value`.
    fn initializer(&mut self) -> PResult<Option<Expr>> {
        if self.eat(&Tok::Assign) {
            self.expr().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Consumes the current token and says whether it was `tok`.
    fn bump_is(&mut self, tok: &Tok) -> bool {
        let is = self.at(tok);
        self.bump();
        is
    }

    fn keyword_stmt(&mut self, kind: StmtKind) -> PResult<(StmtKind, bool)> {
        self.bump();
        Ok((kind, true))
    }

    /// `return` takes a value only from the same line.
    fn return_stmt(&mut self) -> PResult<(StmtKind, bool)> {
        self.bump();
        let ends = matches!(self.peek(), Tok::Semi | Tok::RBrace | Tok::Eof) || self.nl_before();
        let value = if ends { None } else { Some(self.expr()?) };
        Ok((StmtKind::Return(value), true))
    }

    fn throw_stmt(&mut self) -> PResult<(StmtKind, bool)> {
        self.bump();
        Ok((StmtKind::Throw(self.expr()?), true))
    }

    fn while_stmt(&mut self) -> PResult<(StmtKind, bool)> {
        self.bump();
        let cond = self.header_expr()?;
        let body = self.block("`{` after `while` condition")?;
        Ok((StmtKind::While { cond, body }, false))
    }

    fn loop_stmt(&mut self) -> PResult<(StmtKind, bool)> {
        self.bump();
        let body = self.block("`{` after `loop`")?;
        Ok((StmtKind::Loop { body }, false))
    }

    fn for_stmt(&mut self) -> PResult<(StmtKind, bool)> {
        self.bump();
        let first = self.expect_ident("loop variable after `for`")?;
        let second = if self.eat(&Tok::Comma) {
            Some(self.expect_ident("second loop variable")?)
        } else {
            None
        };
        self.expect(&Tok::In, "`in` after loop variables")?;
        let iter = self.header_expr()?;
        let body = self.block("`{` after `for` header")?;
        let kind = StmtKind::For {
            first,
            second,
            iter,
            body,
        };
        Ok((kind, false))
    }

    /// `defer stmt` / `errdefer stmt`. Declarations cannot be deferred: they would
    /// declare nothing anyone could see.
    fn defer(&mut self) -> PResult<(StmtKind, bool)> {
        let err_only = self.bump_is(&Tok::Errdefer);
        let (stmt, needs_end) = self.stmt()?;
        let declaration = matches!(
            stmt.kind,
            StmtKind::Let { .. }
                | StmtKind::Fn(_)
                | StmtKind::Struct(_)
                | StmtKind::Impl(_)
                | StmtKind::Import(_)
        );
        if declaration {
            self.error(stmt.span, "cannot defer a declaration");
        }
        let stmt = Box::new(stmt);
        Ok((StmtKind::Defer { stmt, err_only }, needs_end))
    }

    /// `if`, `try` or a `{ }` block as a statement: it ends at its closing `}`.
    fn block_like_stmt(&mut self) -> PResult<(StmtKind, bool)> {
        let expr = match self.peek() {
            Tok::If => self.if_expr(),
            Tok::Try => self.try_expr(),
            _ => self.block_expr(),
        };
        expr.map(|e| (StmtKind::Expr(e), false))
    }

    /// An expression statement or an assignment `target op= value`.
    fn expr_or_assign(&mut self) -> PResult<(StmtKind, bool)> {
        let target = self.expr()?;
        match assign_op(self.peek()) {
            Some(op) if !self.line_break() => self.assign(target, op),
            _ => Ok((StmtKind::Expr(target), true)),
        }
    }

    fn assign(&mut self, target: Expr, op: Option<BinOp>) -> PResult<(StmtKind, bool)> {
        let valid = matches!(
            target.kind,
            ExprKind::Name(_) | ExprKind::Index { .. } | ExprKind::Field { .. }
        );
        if !valid {
            self.error(target.span, "invalid assignment target");
        }
        self.bump();
        let value = self.expr()?;
        Ok((StmtKind::Assign { target, op, value }, true))
    }

    /// An optional `: Type`.
    fn type_suffix(&mut self) -> PResult<Option<TypeAnn>> {
        if self.eat(&Tok::Colon) {
            self.type_ann().map(Some)
        } else {
            Ok(None)
        }
    }

    /// `int`, `Vec2`, `fn`, `str?` ...
    fn type_ann(&mut self) -> PResult<TypeAnn> {
        let name = if self.at(&Tok::Fn) {
            Name {
                text: "fn".to_string(),
                span: self.bump(),
            }
        } else {
            self.expect_ident("type name")?
        };
        let nilable = self.eat(&Tok::Question);
        Ok(TypeAnn { name, nilable })
    }

    // ----- declarations -----

    /// `fn name(params) -> T { body }`.
    fn fn_decl(&mut self) -> PResult<(StmtKind, bool)> {
        let start = self.bump();
        let name = self.expect_ident("function name")?;
        let decl = self.fn_rest(start, Some(name), false)?;
        Ok((StmtKind::Fn(Box::new(decl)), false))
    }

    /// `struct Name { a, b: T, c = default }`: fields separated by `,` or line breaks.
    fn struct_decl(&mut self) -> PResult<(StmtKind, bool)> {
        self.bump();
        let name = self.expect_ident("struct name after `struct`")?;
        self.expect(&Tok::LBrace, "`{` after struct name")?;
        let saved = self.set_context(true, false);
        let mut fields = Vec::new();
        while !self.at(&Tok::RBrace) {
            fields.push(self.field_decl()?);
            let separated = self.eat(&Tok::Comma) || self.nl_before();
            if !separated && !self.at(&Tok::RBrace) {
                return self.expected("`,` or newline between fields");
            }
        }
        self.ctx = saved;
        self.bump();
        Ok((StmtKind::Struct(StructDecl { name, fields }), false))
    }

    fn field_decl(&mut self) -> PResult<FieldDecl> {
        let name = self.expect_ident("field name")?;
        let ty = self.type_suffix()?;
        let default = self.initializer()?;
        Ok(FieldDecl { name, ty, default })
    }

    /// `impl Name { fn ... }`: the only place where `self` may be a parameter.
    fn impl_decl(&mut self) -> PResult<(StmtKind, bool)> {
        self.bump();
        let name = self.expect_ident("struct name after `impl`")?;
        self.expect(&Tok::LBrace, "`{` after `impl` name")?;
        let saved = self.set_context(true, false);
        let mut methods = Vec::new();
        loop {
            while self.eat(&Tok::Semi) {}
            if self.at(&Tok::RBrace) {
                break;
            }
            if !self.at(&Tok::Fn) {
                return self.expected("`fn` or `}` in impl block");
            }
            methods.push(self.method()?);
        }
        self.ctx = saved;
        self.bump();
        Ok((StmtKind::Impl(ImplDecl { name, methods }), false))
    }

    fn method(&mut self) -> PResult<FnDecl> {
        let start = self.bump();
        let name = self.expect_ident("method name")?;
        self.fn_rest(start, Some(name), true)
    }

    /// `import m`, `import m as b`, `import m from "p"`, `import { a, b as c } from "p"`
    /// (or `from m`).
    fn import(&mut self) -> PResult<(StmtKind, bool)> {
        let start = self.bump();
        if self.blocks > 0 {
            self.error(start, "imports are only allowed at the top level");
        }
        let kind = if self.at(&Tok::LBrace) {
            self.import_names()?
        } else {
            self.import_module()?
        };
        let span = start.to(self.prev_span());
        Ok((StmtKind::Import(Import { kind, span }), true))
    }

    fn import_module(&mut self) -> PResult<ImportKind> {
        let module = self.expect_ident("module name after `import`")?;
        let mut binding = module.clone();
        let mut path = None;
        if self.eat(&Tok::As) {
            binding = self.expect_ident("name after `as`")?;
        } else if self.eat(&Tok::From) {
            path = Some(self.plain_string("module path after `from`")?);
        }
        Ok(ImportKind::Module {
            module,
            binding,
            path,
        })
    }

    fn import_names(&mut self) -> PResult<ImportKind> {
        self.bump();
        let (names, _) =
            self.comma_list(&Tok::RBrace, "`}` after imported names", Self::import_name)?;
        self.expect(&Tok::From, "`from` after import list")?;
        let (module, path) = match self.ident_if_present() {
            Some(module) => (Some(module), None),
            None => (None, Some(self.plain_string("module path after `from`")?)),
        };
        Ok(ImportKind::Names {
            names,
            module,
            path,
        })
    }

    /// `name` or `name as binding`.
    fn import_name(&mut self) -> PResult<(Name, Name)> {
        let name = self.expect_ident("name to import")?;
        let binding = if self.eat(&Tok::As) {
            self.expect_ident("name after `as`")?
        } else {
            name.clone()
        };
        Ok((name, binding))
    }

    /// A string literal without interpolation.
    fn plain_string(&mut self, what: &str) -> PResult<String> {
        match self.peek() {
            Tok::Str(text) => {
                let text = text.clone();
                self.bump();
                Ok(text)
            }
            Tok::StrStart => self.fail(
                self.span(),
                "expected a plain string, found an interpolated one",
            ),
            _ => self.expected(what),
        }
    }

    // ----- blocks and functions -----

    /// `{ stmts }`; a last expression statement without `;` becomes the tail.
    fn block(&mut self, what: &str) -> PResult<Block> {
        let open = self.expect(&Tok::LBrace, what)?;
        self.blocks += 1;
        let saved = self.set_context(true, false);
        let (stmts, open_tail) = self.stmt_list(false);
        self.ctx = saved;
        self.blocks -= 1;
        let close = self.expect(&Tok::RBrace, "`}` to close the block")?;
        Ok(into_block(stmts, open_tail, open.to(close)))
    }

    fn block_expr(&mut self) -> PResult<Expr> {
        self.block("`{`").map(|block| Expr {
            span: block.span,
            kind: ExprKind::Block(block),
        })
    }

    /// The rest of a function after `fn name`: `(params) -> T { body }`.
    fn fn_rest(&mut self, start: Span, name: Option<Name>, is_method: bool) -> PResult<FnDecl> {
        self.expect(&Tok::LParen, "`(` before parameters")?;
        let (params, rest) = self.params(&Tok::RParen, "`)` after parameters", is_method)?;
        let ret = if self.eat(&Tok::Arrow) {
            Some(self.type_ann()?)
        } else {
            None
        };
        let body = self.block("`{` before function body")?;
        Ok(FnDecl {
            name,
            params,
            rest,
            ret,
            span: start.to(body.span),
            body,
        })
    }

    /// A parameter list up to `close` (`)`, or `|` for a lambda), checked for order.
    fn params(
        &mut self,
        close: &Tok,
        what: &str,
        is_method: bool,
    ) -> PResult<(Vec<Param>, Option<Name>)> {
        let items = if close == &Tok::Pipe {
            self.comma_list(close, what, Self::lambda_param)?.0
        } else {
            self.comma_list(close, what, Self::param)?.0
        };
        Ok(self.check_params(items, is_method))
    }

    /// `self` first (methods only), then parameters without defaults, then with
    /// defaults, and the rest parameter last.
    fn check_params(
        &mut self,
        items: Vec<ParamItem>,
        is_method: bool,
    ) -> (Vec<Param>, Option<Name>) {
        let mut params = Vec::new();
        let mut rest: Option<Name> = None;
        let mut seen_default = false;
        for (i, item) in items.into_iter().enumerate() {
            if rest.is_some() {
                self.error(item.span(), "the rest parameter must be last");
            }
            let mut param = match item {
                ParamItem::Rest(name) => {
                    rest = Some(name);
                    continue;
                }
                ParamItem::Param(param) => param,
            };
            if param.is_self {
                if !is_method {
                    self.error(
                        param.name.span,
                        "`self` is only allowed as a method's first parameter",
                    );
                } else if i > 0 {
                    self.error(param.name.span, "`self` must be the first parameter");
                }
                param.is_self = is_method;
            } else if param.default.is_some() {
                seen_default = true;
            } else if seen_default {
                self.error(
                    param.name.span,
                    "a parameter without a default cannot follow one with a default",
                );
            }
            params.push(param);
        }
        (params, rest)
    }

    /// `name`, `name: T`, `name = default`, `...rest` or `self`.
    fn param(&mut self) -> PResult<ParamItem> {
        self.param_with(Self::expr)
    }

    /// In a lambda a default stops before `|`, which closes the list.
    fn lambda_param(&mut self) -> PResult<ParamItem> {
        self.param_with(|p| p.binary(PREC_BIT_OR + 1))
    }

    fn param_with(
        &mut self,
        default: impl FnOnce(&mut Self) -> PResult<Expr>,
    ) -> PResult<ParamItem> {
        if self.eat(&Tok::Ellipsis) {
            return self
                .expect_ident("rest parameter name after `...`")
                .map(ParamItem::Rest);
        }
        if self.at(&Tok::SelfKw) {
            let span = self.bump();
            let name = Name {
                text: "self".to_string(),
                span,
            };
            return Ok(ParamItem::Param(Param {
                name,
                ty: None,
                default: None,
                is_self: true,
            }));
        }
        let name = self.expect_ident("parameter name")?;
        let ty = self.type_suffix()?;
        let default = if self.eat(&Tok::Assign) {
            self.enter()?;
            let value = default(self);
            self.leave();
            Some(value?)
        } else {
            None
        };
        Ok(ParamItem::Param(Param {
            name,
            ty,
            default,
            is_self: false,
        }))
    }

    /// Items separated by `,` (a trailing one allowed) up to `close`, which is consumed.
    /// Line breaks are insignificant inside. Returns the items and the closer's span.
    fn comma_list<T>(
        &mut self,
        close: &Tok,
        what: &str,
        mut item: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<(Vec<T>, Span)> {
        let saved = self.set_context(false, false);
        let mut items = Vec::new();
        while !self.at(close) {
            items.push(item(self)?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        let end = self.expect(close, what)?;
        self.ctx = saved;
        Ok((items, end))
    }

    // ----- expressions -----

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let expr = self.binary(0);
        self.leave();
        expr
    }

    /// An expression inside brackets, where line breaks do not matter.
    fn bracketed_expr(&mut self) -> PResult<Expr> {
        let saved = self.set_context(false, false);
        let expr = self.expr();
        self.ctx = saved;
        expr
    }

    /// An `if`/`while`/`for` header: `Name {` there opens the body.
    fn header_expr(&mut self) -> PResult<Expr> {
        let saved = self.set_context(self.ctx.nl_ends, true);
        let expr = self.expr();
        self.ctx = saved;
        expr
    }

    /// The next infix operator binding at least as tightly as `min`, if the expression
    /// goes on.
    fn infix(&self, min: u8) -> Option<Infix> {
        infix_of(self.peek()).filter(|op| op.prec() >= min && !self.line_break())
    }

    /// Operators binding at least as tightly as `min`.
    fn binary(&mut self, min: u8) -> PResult<Expr> {
        let outer = self.measure_start();
        let first = self.unary()?;
        let (expr, links) = match self.infix(min) {
            Some(_) => self.operator_chain(first, min)?,
            None => (first, 0),
        };
        self.measure_end(outer, links)?;
        Ok(expr)
    }

    /// Operator precedence with explicit stacks, so neither long chains nor many
    /// precedence levels recurse. Operators of one level associate to the left; `..`
    /// does not associate at all. Also returns the number of operators: the tree is at
    /// most that much deeper than its operands.
    fn operator_chain(&mut self, first: Expr, min: u8) -> PResult<(Expr, usize)> {
        // Each pending operator with its left operand; `rhs` is the operand being built.
        let mut pending: Vec<(Expr, Infix)> = Vec::new();
        let mut rhs = first;
        let mut count = 0;
        while let Some(op) = self.infix(min) {
            count += 1;
            if count > MAX_CHAIN {
                return self.fail(
                    self.span(),
                    "expression too long: split this operator chain",
                );
            }
            while pending
                .last()
                .is_some_and(|(_, top)| top.prec() >= op.prec())
            {
                let Some((lhs, top)) = pending.pop() else {
                    break;
                };
                if top.prec() == PREC_RANGE && op.prec() == PREC_RANGE {
                    return self.fail(self.span(), "range operators cannot be chained");
                }
                rhs = top.build(lhs, rhs);
            }
            self.bump();
            pending.push((rhs, op));
            rhs = self.unary()?;
        }
        while let Some((lhs, top)) = pending.pop() {
            rhs = top.build(lhs, rhs);
        }
        Ok((rhs, count))
    }

    /// Prefix operators. They bind looser than `**`, so `-2 ** 2` is `-(2 ** 2)`.
    fn unary(&mut self) -> PResult<Expr> {
        match prefix_of(self.peek()) {
            Some(_) => self.prefixed(),
            None => self.power(),
        }
    }

    /// A run of prefix operators is a loop, but each counts as a nesting level.
    fn prefixed(&mut self) -> PResult<Expr> {
        let mut prefixes = Vec::new();
        let operand = loop {
            let Some(op) = prefix_of(self.peek()) else {
                break self.power();
            };
            if let Err(reported) = self.enter() {
                break Err(reported);
            }
            prefixes.push((op, self.bump()));
        };
        self.depth -= prefixes.len();
        let mut expr = operand?;
        while let Some((op, start)) = prefixes.pop() {
            expr = Expr {
                span: start.to(expr.span),
                kind: ExprKind::Unary {
                    op,
                    expr: Box::new(expr),
                },
            };
        }
        Ok(expr)
    }

    /// `base ** exponent`, right-associative; the exponent may carry a prefix (`2 ** -1`).
    fn power(&mut self) -> PResult<Expr> {
        let base = self.postfix()?;
        if self.at(&Tok::StarStar) && !self.line_break() {
            self.exponent(base)
        } else {
            Ok(base)
        }
    }

    fn exponent(&mut self, base: Expr) -> PResult<Expr> {
        self.bump();
        self.enter()?;
        let exponent = self.unary();
        self.leave();
        Ok(Infix::Bin(BinOp::Pow).build(base, exponent?))
    }

    /// Calls, indexing, fields and method calls. A `.` may start a new line (method
    /// chains); `(` and `[` on a new line start a new statement instead.
    fn postfix(&mut self) -> PResult<Expr> {
        let outer = self.measure_start();
        let expr = self.primary()?;
        let (expr, links) = if self.at_postfix() {
            self.postfix_chain(expr)?
        } else {
            (expr, 0)
        };
        self.measure_end(outer, links)?;
        Ok(expr)
    }

    fn at_postfix(&self) -> bool {
        match self.peek() {
            Tok::LParen | Tok::LBracket => !self.line_break(),
            Tok::Dot => true,
            _ => false,
        }
    }

    /// The calls, indexes and fields after `expr`, and how many there were.
    fn postfix_chain(&mut self, mut expr: Expr) -> PResult<(Expr, usize)> {
        let mut count = 0;
        while self.at_postfix() {
            count += 1;
            if count > MAX_CHAIN {
                return self.fail(
                    self.span(),
                    "expression too long: split this chain of calls",
                );
            }
            expr = match self.peek() {
                Tok::LParen => self.call(expr)?,
                Tok::LBracket => self.index(expr)?,
                _ => self.field_or_method(expr)?,
            };
        }
        Ok((expr, count))
    }

    fn call(&mut self, callee: Expr) -> PResult<Expr> {
        self.bump();
        let (args, end) = self.comma_list(&Tok::RParen, "`)` after arguments", Self::expr)?;
        Ok(Expr {
            span: callee.span.to(end),
            kind: ExprKind::Call {
                callee: Box::new(callee),
                args,
            },
        })
    }

    fn index(&mut self, target: Expr) -> PResult<Expr> {
        self.bump();
        let index = self.bracketed_expr()?;
        let end = self.expect(&Tok::RBracket, "`]` after index")?;
        Ok(Expr {
            span: target.span.to(end),
            kind: ExprKind::Index {
                target: Box::new(target),
                index: Box::new(index),
            },
        })
    }

    /// `.name` or `.name(args)`. Keywords are accepted as names here (`x.from`, `m.in`)
    /// since after a `.` nothing else could be meant.
    fn field_or_method(&mut self, target: Expr) -> PResult<Expr> {
        self.bump();
        let text = match self.peek() {
            Tok::Ident(text) => text.clone(),
            keyword if keyword.is_keyword() => keyword.text().to_string(),
            _ => return self.expected("field or method name after `.`"),
        };
        let name = Name {
            text,
            span: self.bump(),
        };
        if !self.at(&Tok::LParen) || self.line_break() {
            return Ok(Expr {
                span: target.span.to(name.span),
                kind: ExprKind::Field {
                    target: Box::new(target),
                    name,
                },
            });
        }
        self.bump();
        let (args, end) = self.comma_list(&Tok::RParen, "`)` after arguments", Self::expr)?;
        // Runtime errors about a method call point at the method name, not the receiver.
        Ok(Expr {
            span: name.span.to(end),
            kind: ExprKind::MethodCall {
                recv: Box::new(target),
                method: name,
                args,
            },
        })
    }

    /// Dispatches on the first token (tail calls only, as in `stmt_kind`).
    fn primary(&mut self) -> PResult<Expr> {
        match self.peek() {
            Tok::Ident(_) => self.name_or_struct_lit(),
            Tok::StrStart => self.interpolation(),
            Tok::LParen => self.paren(),
            Tok::LBracket => self.array(),
            Tok::LBrace => self.map(),
            Tok::Pipe | Tok::OrOr => self.lambda(),
            Tok::Fn => self.fn_expr(),
            Tok::If => self.if_expr(),
            Tok::Try => self.try_expr(),
            Tok::Spawn => self.spawn(),
            _ => self.literal(),
        }
    }

    fn literal(&mut self) -> PResult<Expr> {
        let span = self.span();
        let kind = match self.peek() {
            Tok::Int(value) => ExprKind::Int(*value),
            Tok::Float(value) => ExprKind::Float(*value),
            Tok::Str(text) => ExprKind::Str(text.clone()),
            Tok::True => ExprKind::Bool(true),
            Tok::False => ExprKind::Bool(false),
            Tok::Nil => ExprKind::Nil,
            Tok::SelfKw => ExprKind::SelfRef,
            _ => return self.expected("expression"),
        };
        self.bump();
        Ok(Expr { kind, span })
    }

    /// A name, or `Name { field: e, shorthand }` where struct literals are allowed.
    fn name_or_struct_lit(&mut self) -> PResult<Expr> {
        let name = self.expect_ident("name")?;
        if self.at(&Tok::LBrace) && !self.ctx.no_struct && !self.line_break() {
            return self.struct_lit(name);
        }
        Ok(Expr {
            span: name.span,
            kind: ExprKind::Name(name),
        })
    }

    fn struct_lit(&mut self, name: Name) -> PResult<Expr> {
        self.bump();
        let (fields, end) =
            self.comma_list(&Tok::RBrace, "`}` after struct fields", Self::field_init)?;
        Ok(Expr {
            span: name.span.to(end),
            kind: ExprKind::StructLit { name, fields },
        })
    }

    /// `field: value` or the shorthand `field`.
    fn field_init(&mut self) -> PResult<(Name, Option<Expr>)> {
        let field = self.expect_ident("field name")?;
        if !self.eat(&Tok::Colon) {
            return Ok((field, None));
        }
        Ok((field, Some(self.expr()?)))
    }

    /// `"a ${x} b"`: the lexer has already split it into pieces.
    fn interpolation(&mut self) -> PResult<Expr> {
        let start = self.bump();
        let mut parts = Vec::new();
        loop {
            match self.peek() {
                Tok::StrLit(text) => {
                    parts.push(InterpPart::Lit(text.clone()));
                    self.bump();
                }
                Tok::InterpOpen => {
                    self.bump();
                    let expr = self.bracketed_expr()?;
                    parts.push(InterpPart::Expr(expr));
                    self.expect(&Tok::InterpClose, "`}` after interpolated expression")?;
                }
                _ => break,
            }
        }
        let end = self.expect(&Tok::StrEnd, "end of string")?;
        Ok(Expr {
            span: start.to(end),
            kind: ExprKind::Interp(parts),
        })
    }

    /// `( e )`: the expression's span grows to cover the parentheses.
    fn paren(&mut self) -> PResult<Expr> {
        let start = self.bump();
        let mut inner = self.bracketed_expr()?;
        inner.span = start.to(self.expect(&Tok::RParen, "`)` after expression")?);
        Ok(inner)
    }

    fn array(&mut self) -> PResult<Expr> {
        let start = self.bump();
        let (items, end) =
            self.comma_list(&Tok::RBracket, "`]` after array elements", Self::expr)?;
        Ok(Expr {
            span: start.to(end),
            kind: ExprKind::Array(items),
        })
    }

    /// `{a: 1, "two words": 2, [expr]: v, 3: "int key"}`.
    fn map(&mut self) -> PResult<Expr> {
        let start = self.bump();
        let (entries, end) =
            self.comma_list(&Tok::RBrace, "`}` after map entries", Self::map_entry)?;
        Ok(Expr {
            span: start.to(end),
            kind: ExprKind::Map(entries),
        })
    }

    fn map_entry(&mut self) -> PResult<(MapKey, Expr)> {
        let key = self.map_key()?;
        self.expect(&Tok::Colon, "`:` after map key")?;
        Ok((key, self.expr()?))
    }

    fn map_key(&mut self) -> PResult<MapKey> {
        match self.peek() {
            Tok::Ident(_) => self.expect_ident("map key").map(MapKey::Name),
            Tok::Str(text) => {
                let text = text.clone();
                Ok(MapKey::Str(text, self.bump()))
            }
            Tok::LBracket => {
                self.bump();
                let key = self.bracketed_expr()?;
                self.expect(&Tok::RBracket, "`]` after computed map key")?;
                Ok(MapKey::Expr(key))
            }
            Tok::Int(_) | Tok::Float(_) | Tok::True | Tok::False | Tok::Nil => {
                self.literal().map(MapKey::Expr)
            }
            Tok::StrStart => self.interpolation().map(MapKey::Expr),
            _ => self.expected("map key"),
        }
    }

    /// `|a, b| expr`, `|x| { block }`, `|| expr`. An expression body becomes a block whose
    /// tail is the expression.
    fn lambda(&mut self) -> PResult<Expr> {
        let start = self.span();
        let (params, rest) = if self.eat(&Tok::OrOr) {
            (Vec::new(), None)
        } else {
            self.bump();
            self.params(&Tok::Pipe, "`|` after lambda parameters", false)?
        };
        let body = if self.at(&Tok::LBrace) {
            self.block("`{`")?
        } else {
            let expr = self.expr()?;
            Block {
                stmts: Vec::new(),
                span: expr.span,
                tail: Some(Box::new(expr)),
            }
        };
        Ok(fn_node(FnDecl {
            name: None,
            params,
            rest,
            ret: None,
            span: start.to(body.span),
            body,
        }))
    }

    /// `fn (params) -> T { body }` in expression position.
    fn fn_expr(&mut self) -> PResult<Expr> {
        let start = self.bump();
        self.fn_rest(start, None, false).map(fn_node)
    }

    /// `if c { } else if c { } else { }`. An `else if` chain is a loop (folded from the
    /// right afterwards), so long chains do not count as nesting; their length counts
    /// toward the height.
    fn if_expr(&mut self) -> PResult<Expr> {
        let outer = self.measure_start();
        let first = self.if_arm()?;
        let mut else_ifs = Vec::new();
        let mut else_block = None;
        while self.at(&Tok::Else) {
            if self.nl_before() {
                self.error(
                    self.span(),
                    "`else` must be on the same line as the `}` before it",
                );
            }
            self.bump();
            if !self.at(&Tok::If) {
                else_block = Some(self.block("`{` or `if` after `else`")?);
                break;
            }
            if else_ifs.len() >= MAX_CHAIN {
                return self.fail(self.span(), "expression too long: too many `else if` arms");
            }
            else_ifs.push(self.if_arm()?);
        }
        self.measure_end(outer, else_ifs.len())?;
        Ok(fold_if_chain(first, else_ifs, else_block))
    }

    /// `if cond { then }`.
    fn if_arm(&mut self) -> PResult<IfArm> {
        let start = self.bump();
        let cond = self.header_expr()?;
        let then = self.block("`{` after `if` condition")?;
        Ok(IfArm { start, cond, then })
    }

    /// `try { } catch e { }` (the name is optional; `catch` may start the next line).
    fn try_expr(&mut self) -> PResult<Expr> {
        let start = self.bump();
        let body = self.block("`{` after `try`")?;
        self.expect(&Tok::Catch, "`catch` after `try` block")?;
        let catch_name = self.ident_if_present();
        let handler = self.block("`{` after `catch`")?;
        Ok(Expr {
            span: start.to(handler.span),
            kind: ExprKind::Try {
                body,
                catch_name,
                handler,
            },
        })
    }

    /// `spawn f(x)`: the operand is a whole postfix expression and must be a call.
    fn spawn(&mut self) -> PResult<Expr> {
        let start = self.bump();
        self.enter()?;
        let call = self.postfix();
        self.leave();
        let call = call?;
        if !matches!(
            call.kind,
            ExprKind::Call { .. } | ExprKind::MethodCall { .. }
        ) {
            self.error(call.span, "spawn expects a call");
        }
        Ok(Expr {
            span: start.to(call.span),
            kind: ExprKind::Spawn(Box::new(call)),
        })
    }
}

fn into_block(mut stmts: Vec<Stmt>, open_tail: bool, span: Span) -> Block {
    let tail = match stmts.pop() {
        Some(Stmt {
            kind: StmtKind::Expr(e),
            ..
        }) if open_tail => Some(Box::new(e)),
        Some(other) => {
            stmts.push(other);
            None
        }
        None => None,
    };
    Block { stmts, tail, span }
}

fn fn_node(decl: FnDecl) -> Expr {
    Expr {
        span: decl.span,
        kind: ExprKind::Fn(Box::new(decl)),
    }
}

/// A parsed parameter before the order checks.
enum ParamItem {
    Param(Param),
    Rest(Name),
}

impl ParamItem {
    fn span(&self) -> Span {
        match self {
            ParamItem::Param(param) => param.name.span,
            ParamItem::Rest(name) => name.span,
        }
    }
}

/// Nests `if a {} else if b {} else {}` as `If(a, else: If(b, else: Block))`.
fn fold_if_chain(first: IfArm, mut else_ifs: Vec<IfArm>, else_block: Option<Block>) -> Expr {
    let mut else_ = else_block.map(|block| Expr {
        span: block.span,
        kind: ExprKind::Block(block),
    });
    while let Some(arm) = else_ifs.pop() {
        else_ = Some(arm.into_expr(else_));
    }
    first.into_expr(else_)
}

/// One `if cond { then }` of an `else if` chain, before the chain is folded.
struct IfArm {
    start: Span,
    cond: Expr,
    then: Block,
}

impl IfArm {
    fn into_expr(self, else_: Option<Expr>) -> Expr {
        let end = else_.as_ref().map_or(self.then.span, |e| e.span);
        Expr {
            span: self.start.to(end),
            kind: ExprKind::If {
                cond: Box::new(self.cond),
                then: self.then,
                else_: else_.map(Box::new),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ----- an s-expression printer, so expected trees fit on one line -----

    fn op_text(op: BinOp) -> &'static str {
        match op {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::IntDiv => "~/",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
        }
    }

    fn list(items: &[Expr]) -> String {
        items.iter().map(sx).collect::<Vec<_>>().join(" ")
    }

    fn sx(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Nil => "nil".into(),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Int(i) => i.to_string(),
            ExprKind::Float(f) => format!("{f:?}"),
            ExprKind::Str(s) => format!("{s:?}"),
            ExprKind::Interp(parts) => {
                let parts: Vec<String> = parts
                    .iter()
                    .map(|p| match p {
                        InterpPart::Lit(s) => format!("{s:?}"),
                        InterpPart::Expr(e) => sx(e),
                    })
                    .collect();
                format!("(interp {})", parts.join(" "))
            }
            ExprKind::Name(n) => n.text.clone(),
            ExprKind::SelfRef => "self".into(),
            ExprKind::Array(items) => format!("[{}]", list(items)),
            ExprKind::Map(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| {
                        let k = match k {
                            MapKey::Name(n) => n.text.clone(),
                            MapKey::Str(s, _) => format!("{s:?}"),
                            MapKey::Expr(e) => format!("[{}]", sx(e)),
                        };
                        format!("{k}: {}", sx(v))
                    })
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }
            ExprKind::StructLit { name, fields } => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(n, v)| match v {
                        Some(v) => format!("{}: {}", n.text, sx(v)),
                        None => n.text.clone(),
                    })
                    .collect();
                format!("(new {} {})", name.text, fields.join(", "))
            }
            ExprKind::Unary { op, expr } => {
                let op = match op {
                    UnOp::Neg => "-",
                    UnOp::Not => "!",
                    UnOp::BitNot => "~",
                };
                format!("({op} {})", sx(expr))
            }
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", op_text(*op), sx(lhs), sx(rhs))
            }
            ExprKind::Logical { and, lhs, rhs } => {
                let op = if *and { "&&" } else { "||" };
                format!("({op} {} {})", sx(lhs), sx(rhs))
            }
            ExprKind::Range {
                start,
                end,
                inclusive,
            } => {
                let op = if *inclusive { "..=" } else { ".." };
                format!("({op} {} {})", sx(start), sx(end))
            }
            ExprKind::Call { callee, args } => format!("(call {} {})", sx(callee), list(args)),
            ExprKind::MethodCall { recv, method, args } => {
                format!("(.{} {} {})", method.text, sx(recv), list(args))
            }
            ExprKind::Index { target, index } => format!("(idx {} {})", sx(target), sx(index)),
            ExprKind::Field { target, name } => format!("(. {} {})", sx(target), name.text),
            ExprKind::Fn(decl) => fn_sx(decl),
            ExprKind::If { cond, then, else_ } => match else_ {
                Some(e) => format!("(if {} {} {})", sx(cond), block_sx(then), sx(e)),
                None => format!("(if {} {})", sx(cond), block_sx(then)),
            },
            ExprKind::Block(b) => block_sx(b),
            ExprKind::Try {
                body,
                catch_name,
                handler,
            } => {
                let name = catch_name.as_ref().map_or("_", |n| n.text.as_str());
                format!("(try {} {name} {})", block_sx(body), block_sx(handler))
            }
            ExprKind::Spawn(call) => format!("(spawn {})", sx(call)),
        }
    }

    fn ty_sx(ty: &Option<TypeAnn>) -> String {
        ty.as_ref().map_or(String::new(), |t| {
            format!(": {}{}", t.name.text, if t.nilable { "?" } else { "" })
        })
    }

    fn fn_sx(decl: &FnDecl) -> String {
        let mut params: Vec<String> = decl
            .params
            .iter()
            .map(|p| {
                let default = p
                    .default
                    .as_ref()
                    .map_or(String::new(), |d| format!(" = {}", sx(d)));
                let marker = if p.is_self { "&" } else { "" };
                format!("{marker}{}{}{default}", p.name.text, ty_sx(&p.ty))
            })
            .collect();
        if let Some(rest) = &decl.rest {
            params.push(format!("...{}", rest.text));
        }
        let name = decl.name.as_ref().map_or("", |n| n.text.as_str());
        let ret = decl.ret.as_ref().map_or(String::new(), |t| {
            format!(" -> {}{}", t.name.text, if t.nilable { "?" } else { "" })
        });
        format!(
            "(fn {name}({}){ret} {})",
            params.join(", "),
            block_sx(&decl.body)
        )
    }

    fn block_sx(b: &Block) -> String {
        let mut parts: Vec<String> = b.stmts.iter().map(stmt_sx).collect();
        if let Some(tail) = &b.tail {
            parts.push(format!("=> {}", sx(tail)));
        }
        format!("{{{}}}", parts.join("; "))
    }

    fn stmt_sx(s: &Stmt) -> String {
        match &s.kind {
            StmtKind::Let {
                name,
                ty,
                init,
                is_const,
            } => {
                let kw = if *is_const { "const" } else { "let" };
                let init = init
                    .as_ref()
                    .map_or(String::new(), |e| format!(" = {}", sx(e)));
                format!("({kw} {}{}{init})", name.text, ty_sx(ty))
            }
            StmtKind::Fn(decl) => fn_sx(decl),
            StmtKind::Struct(decl) => {
                let fields: Vec<String> = decl
                    .fields
                    .iter()
                    .map(|f| {
                        let default = f
                            .default
                            .as_ref()
                            .map_or(String::new(), |d| format!(" = {}", sx(d)));
                        format!("{}{}{default}", f.name.text, ty_sx(&f.ty))
                    })
                    .collect();
                format!("(struct {} {})", decl.name.text, fields.join(", "))
            }
            StmtKind::Impl(decl) => {
                let methods: Vec<String> = decl.methods.iter().map(fn_sx).collect();
                format!("(impl {} {})", decl.name.text, methods.join(" "))
            }
            StmtKind::Import(import) => match &import.kind {
                ImportKind::Module {
                    module,
                    binding,
                    path,
                } => format!("(import {} as {} from {path:?})", module.text, binding.text),
                ImportKind::Names {
                    names,
                    module,
                    path,
                } => {
                    let names: Vec<String> = names
                        .iter()
                        .map(|(n, b)| format!("{} as {}", n.text, b.text))
                        .collect();
                    let module = module.as_ref().map(|m| m.text.clone());
                    format!("(import {{{}}} from {module:?} {path:?})", names.join(", "))
                }
            },
            StmtKind::Expr(e) => sx(e),
            StmtKind::Assign { target, op, value } => {
                let op = op.map_or("", op_text);
                format!("({op}= {} {})", sx(target), sx(value))
            }
            StmtKind::Return(Some(e)) => format!("(return {})", sx(e)),
            StmtKind::Return(None) => "(return)".into(),
            StmtKind::Break => "break".into(),
            StmtKind::Continue => "continue".into(),
            StmtKind::While { cond, body } => format!("(while {} {})", sx(cond), block_sx(body)),
            StmtKind::Loop { body } => format!("(loop {})", block_sx(body)),
            StmtKind::For {
                first,
                second,
                iter,
                body,
            } => {
                let second = second
                    .as_ref()
                    .map_or(String::new(), |n| format!(", {}", n.text));
                format!(
                    "(for {}{second} in {} {})",
                    first.text,
                    sx(iter),
                    block_sx(body)
                )
            }
            StmtKind::Throw(e) => format!("(throw {})", sx(e)),
            StmtKind::Defer { stmt, err_only } => {
                let kw = if *err_only { "errdefer" } else { "defer" };
                format!("({kw} {})", stmt_sx(stmt))
            }
        }
    }

    // ----- helpers -----

    #[track_caller]
    fn module(src: &str) -> Module {
        match parse(src) {
            Ok(m) => m,
            Err(errors) => panic!("unexpected errors in {src:?}: {errors:?}"),
        }
    }

    /// All statements of `src`, printed and joined with " | ".
    #[track_caller]
    fn stmts(src: &str) -> String {
        let m = module(src);
        m.stmts.iter().map(stmt_sx).collect::<Vec<_>>().join(" | ")
    }

    /// The single expression statement `src`.
    #[track_caller]
    fn expr(src: &str) -> String {
        let m = module(src);
        match &m.stmts[..] {
            [Stmt {
                kind: StmtKind::Expr(e),
                ..
            }] => sx(e),
            other => panic!("expected one expression statement in {src:?}, got {other:?}"),
        }
    }

    /// The errors of `src` as "message @ spanned text".
    #[track_caller]
    fn errors(src: &str) -> Vec<String> {
        match parse(src) {
            Ok(m) => panic!("expected errors in {src:?}, got {m:?}"),
            Err(errors) => errors
                .iter()
                .map(|e| {
                    format!(
                        "{} @ {}",
                        e.message,
                        &src[e.span.start as usize..e.span.end as usize]
                    )
                })
                .collect(),
        }
    }

    #[track_caller]
    fn error(src: &str) -> String {
        let errors = errors(src);
        assert_eq!(errors.len(), 1, "expected one error in {src:?}: {errors:?}");
        errors[0].clone()
    }

    fn text(src: &str, span: Span) -> &str {
        &src[span.start as usize..span.end as usize]
    }

    /// Takes a deep tree apart with a work list: dropping it recursively could overflow
    /// the test thread's stack.
    fn dismantle(m: Module) {
        let mut exprs: Vec<Expr> = Vec::new();
        for stmt in m.stmts {
            if let StmtKind::Expr(e) = stmt.kind {
                exprs.push(e);
            }
        }
        while let Some(mut e) = exprs.pop() {
            match std::mem::replace(&mut e.kind, ExprKind::Nil) {
                ExprKind::Binary { lhs, rhs, .. } => exprs.extend([*lhs, *rhs]),
                ExprKind::Call { callee, args } => {
                    exprs.push(*callee);
                    exprs.extend(args);
                }
                ExprKind::If { cond, else_, .. } => {
                    exprs.push(*cond);
                    exprs.extend(else_.map(|e| *e));
                }
                _ => {}
            }
        }
    }

    // ----- literals -----

    #[test]
    fn literals() {
        assert_eq!(expr("42"), "42");
        assert_eq!(expr("0xff"), "255");
        assert_eq!(expr("0XFF"), "255");
        assert_eq!(expr("0b1010"), "10");
        assert_eq!(expr("1_000_000"), "1000000");
        assert_eq!(expr("9223372036854775807"), "9223372036854775807");
        assert_eq!(expr("1.5"), "1.5");
        assert_eq!(expr("1e9"), "1000000000.0");
        assert_eq!(expr("2.5e-3"), "0.0025");
        assert_eq!(expr("1E+3"), "1000.0");
        assert_eq!(expr("true"), "true");
        assert_eq!(expr("false"), "false");
        assert_eq!(expr("nil"), "nil");
        assert_eq!(expr("self"), "self");
        assert_eq!(expr(r#""a\tb""#), r#""a\tb""#);
    }

    #[test]
    fn dot_after_int_is_range_or_method() {
        assert_eq!(expr("1..10"), "(.. 1 10)");
        assert_eq!(expr("1..=10"), "(..= 1 10)");
        assert_eq!(expr("1.foo()"), "(.foo 1 )");
        assert_eq!(expr("1.5.floor()"), "(.floor 1.5 )");
    }

    #[test]
    fn integer_literal_too_large() {
        assert_eq!(
            error("9223372036854775808"),
            "integer literal too large @ 9223372036854775808"
        );
        assert_eq!(
            error("0xffffffffffffffff"),
            "integer literal too large @ 0xffffffffffffffff"
        );
        assert_eq!(
            error("99999999999999999999999"),
            "integer literal too large @ 99999999999999999999999"
        );
        // As in LANGUAGE.md, `-` is an operator applied to a literal that must fit alone.
        assert_eq!(
            error("-9223372036854775808"),
            "integer literal too large @ 9223372036854775808"
        );
    }

    #[test]
    fn interpolation() {
        assert_eq!(expr(r#""x = ${x + 1}""#), r#"(interp "x = " (+ x 1))"#);
        assert_eq!(expr(r#""${a}${b}""#), "(interp a b)");
        assert_eq!(expr(r#""${m["k"]}!""#), r#"(interp (idx m "k") "!")"#);
        assert_eq!(
            expr(r#""a${"b${c}d"}e""#),
            r#"(interp "a" (interp "b" c "d") "e")"#
        );
        assert_eq!(expr(r#""${ {a: 1}.a }""#), "(interp (. {a: 1} a))");
        assert_eq!(expr(r#""\${x} costs $5""#), r#""${x} costs $5""#);
        assert_eq!(expr("\"${\n  x\n  + 1\n}\""), "(interp (+ x 1))");
    }

    #[test]
    fn interpolation_spans_point_into_the_source() {
        let src = r#"let s = "a ${foo + 1} b""#;
        let m = module(src);
        let StmtKind::Let {
            init: Some(init), ..
        } = &m.stmts[0].kind
        else {
            panic!()
        };
        let ExprKind::Interp(parts) = &init.kind else {
            panic!()
        };
        let InterpPart::Expr(e) = &parts[1] else {
            panic!()
        };
        assert_eq!(text(src, e.span), "foo + 1");
        assert_eq!(text(src, init.span), r#""a ${foo + 1} b""#);
    }

    #[test]
    fn collections() {
        assert_eq!(expr("[]"), "[]");
        assert_eq!(expr("[1, 2, 3,]"), "[1 2 3]");
        assert_eq!(expr("[\n  1,\n  2\n]"), "[1 2]");
    }

    #[test]
    fn map_literals() {
        assert_eq!(stmts("let m = {}"), "(let m = {})");
        assert_eq!(
            stmts(r#"let m = {a: 1, "two words": 2, [k + 1]: 3, 3: "int", 1.5: f, true: t,}"#),
            r#"(let m = {a: 1, "two words": 2, [(+ k 1)]: 3, [3]: "int", [1.5]: f, [true]: t})"#
        );
        assert_eq!(
            stmts("let m = {\n  a: 1,\n  b: 2\n}"),
            "(let m = {a: 1, b: 2})"
        );
        assert_eq!(
            error("let m = {a 1}"),
            "expected `:` after map key, found a number @ 1"
        );
    }

    #[test]
    fn struct_literals() {
        assert_eq!(expr("Vec2 { x: 1, y }"), "(new Vec2 x: 1, y)");
        assert_eq!(expr("P {}"), "(new P )");
        assert_eq!(expr("P {\n x: 1,\n y: 2,\n}"), "(new P x: 1, y: 2)");
        assert_eq!(expr("f(P { x: 1 })"), "(call f (new P x: 1))");
    }

    // ----- precedence -----

    #[test]
    fn precedence_table() {
        let cases = [
            ("a || b && c", "(|| a (&& b c))"),
            ("a && b == c", "(&& a (== b c))"),
            ("a == b < c", "(== a (< b c))"),
            ("a < b | c", "(< a (| b c))"),
            ("a | b ^ c", "(| a (^ b c))"),
            ("a ^ b & c", "(^ a (& b c))"),
            ("a & b << c", "(& a (<< b c))"),
            ("a << b .. c", "(<< a (.. b c))"),
            ("a .. b + c", "(.. a (+ b c))"),
            ("a + b * c", "(+ a (* b c))"),
            ("a * -b", "(* a (- b))"),
            ("-a ** b", "(- (** a b))"),
            ("-2 ** 2", "(- (** 2 2))"),
            ("2 ** -1", "(** 2 (- 1))"),
            ("2 ** 3 ** 2", "(** 2 (** 3 2))"),
            ("a ** b.c", "(** a (. b c))"),
            ("!a.b()", "(! (.b a ))"),
            ("~a[0]", "(~ (idx a 0))"),
            ("a - b - c", "(- (- a b) c)"),
            ("a / b ~/ c % d", "(% (~/ (/ a b) c) d)"),
            ("a < b < c", "(< (< a b) c)"),
            ("a == b != c", "(!= (== a b) c)"),
            ("a || b || c", "(|| (|| a b) c)"),
            ("a >> b <= c >= d > e", "(> (>= (<= (>> a b) c) d) e)"),
            ("(a + b) * c", "(* (+ a b) c)"),
            ("a..=b == c..d", "(== (..= a b) (.. c d))"),
            (
                "f(a)(b)[c].d.e(f)",
                "(.e (. (idx (call (call f a) b) c) d) f)",
            ),
            ("!!a", "(! (! a))"),
            ("- -a", "(- (- a))"),
        ];
        for (src, want) in cases {
            assert_eq!(expr(src), want, "{src}");
        }
    }

    #[test]
    fn ranges_do_not_chain() {
        assert_eq!(error("a..b..c"), "range operators cannot be chained @ ..");
        assert_eq!(error("a..b..=c"), "range operators cannot be chained @ ..=");
        assert_eq!(expr("(a..b)..c"), "(.. (.. a b) c)");
    }

    // ----- newline rule -----

    #[test]
    fn newline_ends_statements() {
        assert_eq!(stmts("a\nb"), "a | b");
        assert_eq!(stmts("a; b;"), "a | b");
        assert_eq!(stmts("let x = 5\n-3"), "(let x = 5) | (- 3)");
        assert_eq!(stmts("f\n(x)"), "f | x");
        assert_eq!(stmts("a\n[1]"), "a | [1]");
        assert_eq!(
            error("a b"),
            "expected newline or `;` after statement, found `b` @ b"
        );
    }

    #[test]
    fn newline_after_operator_continues() {
        assert_eq!(stmts("let x = a +\n  b"), "(let x = (+ a b))");
        assert_eq!(
            stmts("let x = a &&\n  b ||\n  c"),
            "(let x = (|| (&& a b) c))"
        );
        assert_eq!(stmts("let x =\n  5"), "(let x = 5)");
        assert_eq!(stmts("x +=\n  1"), "(+= x 1)");
        assert_eq!(stmts("let r = 0..\n  10"), "(let r = (.. 0 10))");
        assert_eq!(stmts("let p = 2 **\n 3"), "(let p = (** 2 3))");
    }

    #[test]
    fn newline_inside_brackets_is_ignored() {
        assert_eq!(stmts("f(a\n, b\n)"), "(call f a b)");
        assert_eq!(stmts("let x = (a\n + b)"), "(let x = (+ a b))");
        assert_eq!(stmts("let x = [a\n - b]"), "(let x = [(- a b)])");
        assert_eq!(stmts("let m = {a:\n 1}"), "(let m = {a: 1})");
        assert_eq!(stmts("a[\n i\n ]"), "(idx a i)");
        // A block inside brackets brings newlines back.
        assert_eq!(
            stmts("f(fn() {\n a\n -b\n})"),
            "(call f (fn () {a; => (- b)}))"
        );
    }

    #[test]
    fn method_chains_continue_on_a_new_line() {
        assert_eq!(
            stmts("xs\n  .map(f)\n  .filter(g)\n  .len"),
            "(. (.filter (.map xs f) g) len)"
        );
        assert_eq!(stmts("let n = a\n.b\nc"), "(let n = (. a b)) | c");
        assert_eq!(stmts("a // comment\n  .b()"), "(.b a )");
    }

    #[test]
    fn block_like_statements_end_at_their_brace() {
        assert_eq!(stmts("if a {} \n (x)"), "(if a {}) | x");
        assert_eq!(stmts("if a {} (x)"), "(if a {}) | x");
        assert_eq!(stmts("{ a } - 1"), "{=> a} | (- 1)");
        assert_eq!(
            stmts("try { a } catch { b }\n[1]"),
            "(try {=> a} _ {=> b}) | [1]"
        );
        assert_eq!(stmts("while a {} b"), "(while a {}) | b");
        assert_eq!(stmts("fn f() {} f()"), "(fn f() {}) | (call f )");
        // In expression position they are ordinary operands.
        assert_eq!(
            stmts("let x = if a { 1 } else { 2 } + 3"),
            "(let x = (+ (if a {=> 1} {=> 2}) 3))"
        );
    }

    #[test]
    fn else_must_follow_the_brace() {
        assert_eq!(stmts("if a { 1 } else { 2 }"), "(if a {=> 1} {=> 2})");
        assert_eq!(
            error("if a {\n 1\n}\nelse {\n 2\n}"),
            "`else` must be on the same line as the `}` before it @ else"
        );
    }

    #[test]
    fn return_value_on_the_same_line_only() {
        assert_eq!(stmts("fn f() { return\n 5 }"), "(fn f() {(return); => 5})");
        assert_eq!(stmts("fn f() { return }"), "(fn f() {(return)})");
        assert_eq!(stmts("fn f() { return; }"), "(fn f() {(return)})");
        assert_eq!(
            stmts("fn f() { return a +\n b }"),
            "(fn f() {(return (+ a b))})"
        );
    }

    #[test]
    fn comments_are_trivia() {
        assert_eq!(stmts("a /* x */ + b"), "(+ a b)");
        assert_eq!(stmts("a /* \n */ b"), "a | b");
        assert_eq!(stmts("a // c\nb"), "a | b");
        assert_eq!(stmts("x = ~// `//` wins over `~/`\n  a"), "(= x (~ a))");
        assert_eq!(stmts("x = a ~/ b"), "(= x (~/ a b))");
    }

    // ----- blocks and tails -----

    #[test]
    fn block_tails() {
        assert_eq!(stmts("fn f() { 5 }"), "(fn f() {=> 5})");
        assert_eq!(stmts("fn f() { 5; }"), "(fn f() {5})");
        assert_eq!(stmts("fn f() { x = 5 }"), "(fn f() {(= x 5)})");
        assert_eq!(
            stmts("fn f() { let x = 1\n x }"),
            "(fn f() {(let x = 1); => x})"
        );
        assert_eq!(
            stmts("fn f() { if a { 1 } else { 2 } }"),
            "(fn f() {=> (if a {=> 1} {=> 2})})"
        );
        assert_eq!(stmts("fn f() { while a {} }"), "(fn f() {(while a {})})");
        assert_eq!(stmts("{ { 1 } }"), "{=> {=> 1}}");
        assert_eq!(stmts("{ ;; a;; b }"), "{a; => b}");
    }

    #[test]
    fn empty_files() {
        assert_eq!(stmts(""), "");
        assert_eq!(stmts("\n  // just a comment\n/* and another */\n;;\n"), "");
    }

    #[test]
    fn brace_at_statement_start_is_a_block() {
        assert_eq!(stmts("{}"), "{}");
        assert_eq!(stmts("{ a }"), "{=> a}");
        assert_eq!(stmts("let m = { }"), "(let m = {})");
    }

    #[test]
    fn headers_do_not_take_struct_literals() {
        assert_eq!(stmts("if x == P { a }"), "(if (== x P) {=> a})");
        assert_eq!(stmts("while x { a }"), "(while x {=> a})");
        assert_eq!(stmts("for x in xs { a }"), "(for x in xs {=> a})");
        assert_eq!(
            stmts("if x == (P { a: 1 }) { b }"),
            "(if (== x (new P a: 1)) {=> b})"
        );
        assert_eq!(
            stmts("if f(P { a }) { b }"),
            "(if (call f (new P a)) {=> b})"
        );
        assert_eq!(stmts("if a { P { x: 1 } }"), "(if a {=> (new P x: 1)})");
        assert_eq!(stmts("let p = P\n{ x }"), "(let p = P) | {=> x}");
    }

    // ----- statements -----

    #[test]
    fn let_and_const() {
        assert_eq!(stmts("let x"), "(let x)");
        assert_eq!(stmts("let x: int = 5"), "(let x: int = 5)");
        assert_eq!(stmts("let x: Vec2? = nil"), "(let x: Vec2? = nil)");
        assert_eq!(stmts("let f: fn = g"), "(let f: fn = g)");
        assert_eq!(stmts("const X = 1"), "(const X = 1)");
        assert_eq!(stmts("const X: float = 1"), "(const X: float = 1)");
        assert_eq!(error("const X"), "constant `X` needs a value @ X");
        assert_eq!(
            error("let 5"),
            "expected variable name after `let`, found a number @ 5"
        );
    }

    #[test]
    fn assignments() {
        let cases = [
            ("x = 1", "(= x 1)"),
            ("a[i] = 1", "(= (idx a i) 1)"),
            ("a.b.c = 1", "(= (. (. a b) c) 1)"),
            ("x += 1", "(+= x 1)"),
            ("x -= 1", "(-= x 1)"),
            ("x *= 1", "(*= x 1)"),
            ("x /= 1", "(/= x 1)"),
            ("x ~/= 1", "(~/= x 1)"),
            ("x %= 1", "(%= x 1)"),
            ("self.x = 1", "(= (. self x) 1)"),
        ];
        for (src, want) in cases {
            assert_eq!(stmts(src), want, "{src}");
        }
        assert_eq!(error("f() = 1"), "invalid assignment target @ f()");
        assert_eq!(error("a + b = 1"), "invalid assignment target @ a + b");
        assert_eq!(error("a.m() += 1"), "invalid assignment target @ m()");
        assert_eq!(
            error("x = y = 1"),
            "expected newline or `;` after statement, found `=` @ ="
        );
        assert_eq!(
            error("let x = (y = 1)"),
            "expected `)` after expression, found `=` @ ="
        );
    }

    #[test]
    fn functions() {
        assert_eq!(
            stmts("fn area(w: float, h: float = 1.0) -> float { return w * h }"),
            "(fn area(w: float, h: float = 1.0) -> float {(return (* w h))})"
        );
        assert_eq!(
            stmts("fn log(level, ...parts) { }"),
            "(fn log(level, ...parts) {})"
        );
        assert_eq!(stmts("fn f(a, b = 1,) {}"), "(fn f(a, b = 1) {})");
        assert_eq!(stmts("fn f(\n a,\n b\n) {}"), "(fn f(a, b) {})");
        assert_eq!(stmts("fn f(...r) {}"), "(fn f(...r) {})");
        assert_eq!(stmts("fn f() -> int? { nil }"), "(fn f() -> int? {=> nil})");
        assert_eq!(
            stmts("let sq = fn(x) { return x * x }"),
            "(let sq = (fn (x) {(return (* x x))}))"
        );
        assert_eq!(stmts("fn(x) { x }(5)"), "(call (fn (x) {=> x}) 5)");
    }

    #[test]
    fn lambdas() {
        assert_eq!(expr("|x| x + 1"), "(fn (x) {=> (+ x 1)})");
        assert_eq!(expr("|a, b| { a; b }"), "(fn (a, b) {a; => b})");
        assert_eq!(expr("|| 5"), "(fn () {=> 5})");
        assert_eq!(expr("| | 5"), "(fn () {=> 5})");
        assert_eq!(expr("|x: int, ...r| r"), "(fn (x: int, ...r) {=> r})");
        assert_eq!(
            expr("|x = 1, y = a ^ b| y"),
            "(fn (x = 1, y = (^ a b)) {=> y})"
        );
        assert_eq!(expr("f(|x| x, 2)"), "(call f (fn (x) {=> x}) 2)");
        assert_eq!(expr("|x| |y| x + y"), "(fn (x) {=> (fn (y) {=> (+ x y)})})");
        assert_eq!(expr("a || || b"), "(|| a (fn () {=> b}))");
        assert_eq!(
            stmts("let f = |x| x\nf(1)"),
            "(let f = (fn (x) {=> x})) | (call f 1)"
        );
    }

    #[test]
    fn parameter_rules() {
        assert_eq!(
            error("fn f(a = 1, b) {}"),
            "a parameter without a default cannot follow one with a default @ b"
        );
        assert_eq!(
            error("fn f(...r, b) {}"),
            "the rest parameter must be last @ b"
        );
        assert_eq!(
            error("fn f(...r, ...s) {}"),
            "the rest parameter must be last @ s"
        );
        assert_eq!(
            error("fn f(self) {}"),
            "`self` is only allowed as a method's first parameter @ self"
        );
        assert_eq!(
            error("let f = |self| 1"),
            "`self` is only allowed as a method's first parameter @ self"
        );
        assert_eq!(
            error("impl P { fn m(a, self) {} }"),
            "`self` must be the first parameter @ self"
        );
        assert_eq!(
            error("impl P { fn m(self) { fn g(self) {} } }"),
            "`self` is only allowed as a method's first parameter @ self"
        );
        assert_eq!(
            error("fn f(a b) {}"),
            "expected `)` after parameters, found `b` @ b"
        );
        assert_eq!(
            error("fn f(a) 5"),
            "expected `{` before function body, found a number @ 5"
        );
    }

    #[test]
    fn control_flow() {
        assert_eq!(
            stmts("if a { 1 } else if b { 2 } else { 3 }"),
            "(if a {=> 1} (if b {=> 2} {=> 3}))"
        );
        assert_eq!(
            stmts("if a { 1 } else if b { 2 }"),
            "(if a {=> 1} (if b {=> 2}))"
        );
        assert_eq!(
            stmts("while i < n { i += 1 }"),
            "(while (< i n) {(+= i 1)})"
        );
        assert_eq!(stmts("loop { break }"), "(loop {break})");
        assert_eq!(stmts("loop { continue; }"), "(loop {continue})");
        assert_eq!(stmts("for i in 0..n { }"), "(for i in (.. 0 n) {})");
        assert_eq!(stmts("for i, x in xs { }"), "(for i, x in xs {})");
        assert_eq!(stmts("throw error(\"x\")"), "(throw (call error \"x\"))");
        assert_eq!(
            stmts("let m = if a > b { a } else { b }"),
            "(let m = (if (> a b) {=> a} {=> b}))"
        );
        assert_eq!(
            error("for in xs {}"),
            "expected loop variable after `for`, found `in` @ in"
        );
        assert_eq!(
            error("for x of xs {}"),
            "expected `in` after loop variables, found `of` @ of"
        );
        assert_eq!(
            error("if a b"),
            "expected `{` after `if` condition, found `b` @ b"
        );
        assert_eq!(
            error("while a b"),
            "expected `{` after `while` condition, found `b` @ b"
        );
    }

    #[test]
    fn try_catch() {
        assert_eq!(stmts("try { a } catch e { b }"), "(try {=> a} e {=> b})");
        assert_eq!(stmts("try { a } catch { b }"), "(try {=> a} _ {=> b})");
        assert_eq!(stmts("try { a }\ncatch e { b }"), "(try {=> a} e {=> b})");
        assert_eq!(
            stmts("let v = try { f() } catch { 0 }"),
            "(let v = (try {=> (call f )} _ {=> 0}))"
        );
        assert_eq!(
            error("try { a }"),
            "unexpected end of file, expected `catch` after `try` block @ "
        );
    }

    #[test]
    fn defer_and_errdefer() {
        assert_eq!(stmts("defer f.close()"), "(defer (.close f ))");
        assert_eq!(
            stmts("errdefer { a(); b() }"),
            "(errdefer {(call a ); => (call b )})"
        );
        assert_eq!(stmts("defer x = 1"), "(defer (= x 1))");
        assert_eq!(stmts("defer { a } b"), "(defer {=> a}) | b");
        assert_eq!(
            error("defer let x = 1"),
            "cannot defer a declaration @ let x = 1"
        );
        assert_eq!(
            error("defer f() g()"),
            "expected newline or `;` after statement, found `g` @ g"
        );
    }

    #[test]
    fn spawn() {
        assert_eq!(expr("spawn f(x)"), "(spawn (call f x))");
        assert_eq!(expr("spawn w.run(1)"), "(spawn (.run w 1))");
        assert_eq!(expr("(spawn f()).join()"), "(.join (spawn (call f )) )");
        assert_eq!(error("spawn f"), "spawn expects a call @ f");
        assert_eq!(error("spawn f.x"), "spawn expects a call @ f.x");
    }

    #[test]
    fn structs_and_impls() {
        assert_eq!(
            stmts("struct Vec2 { x = 0.0, y = 0.0 }"),
            "(struct Vec2 x = 0.0, y = 0.0)"
        );
        assert_eq!(
            stmts("struct P {\n  x: float\n  y = 1,\n  z\n}"),
            "(struct P x: float, y = 1, z)"
        );
        assert_eq!(stmts("struct E {}"), "(struct E )");
        assert_eq!(
            stmts(
                "impl Vec2 {\n  fn new(x, y) { return Vec2 { x, y } }\n  fn len(self) { self.x }\n}"
            ),
            "(impl Vec2 (fn new(x, y) {(return (new Vec2 x, y))}) (fn len(&self) {=> (. self x)}))"
        );
        assert_eq!(stmts("impl E {}"), "(impl E )");
        assert_eq!(
            error("struct P { x y }"),
            "expected `,` or newline between fields, found `y` @ y"
        );
        assert_eq!(
            error("impl P { let x = 1 }"),
            "expected `fn` or `}` in impl block, found `let` @ let"
        );
    }

    #[test]
    fn imports() {
        assert_eq!(stmts("import math"), "(import math as math from None)");
        assert_eq!(stmts("import math as m"), "(import math as m from None)");
        assert_eq!(
            stmts(r#"import geo from "./geo.kn""#),
            r#"(import geo as geo from Some("./geo.kn"))"#
        );
        assert_eq!(
            stmts(r#"import { area, Vec2 as V, } from "./geo.kn""#),
            r#"(import {area as area, Vec2 as V} from None Some("./geo.kn"))"#
        );
        assert_eq!(
            stmts("import {\n sqrt,\n pi\n} from math"),
            r#"(import {sqrt as sqrt, pi as pi} from Some("math") None)"#
        );
        assert_eq!(
            error("fn f() { import math }"),
            "imports are only allowed at the top level @ import"
        );
        assert_eq!(
            error(r#"import g from "${x}""#),
            "expected a plain string, found an interpolated one @ \""
        );
        assert_eq!(
            error("import { a } math"),
            "expected `from` after import list, found `math` @ math"
        );
    }

    #[test]
    fn keywords_are_field_names_after_a_dot() {
        assert_eq!(expr("m.in"), "(. m in)");
        assert_eq!(expr("x.from(1)"), "(.from x 1)");
    }

    // ----- spans -----

    #[test]
    fn spans_cover_their_text() {
        let src = "let x = (a + b) * f(1, 2)\nobj.method(3)\nx.y";
        let m = module(src);
        assert_eq!(text(src, m.stmts[0].span), "let x = (a + b) * f(1, 2)");
        let StmtKind::Let {
            init: Some(init), ..
        } = &m.stmts[0].kind
        else {
            panic!()
        };
        assert_eq!(text(src, init.span), "(a + b) * f(1, 2)");
        let ExprKind::Binary { lhs, rhs, .. } = &init.kind else {
            panic!()
        };
        assert_eq!(text(src, lhs.span), "(a + b)");
        assert_eq!(text(src, rhs.span), "f(1, 2)");
        let StmtKind::Expr(call) = &m.stmts[1].kind else {
            panic!()
        };
        assert_eq!(text(src, call.span), "method(3)");
        let ExprKind::MethodCall { recv, .. } = &call.kind else {
            panic!()
        };
        assert_eq!(text(src, recv.span), "obj");
        assert_eq!(text(src, m.stmts[2].span), "x.y");
    }

    #[test]
    fn spans_of_declarations() {
        let src = "fn f(a) {\n  a\n}\nif a { b } else if c { d }";
        let m = module(src);
        assert_eq!(text(src, m.stmts[0].span), "fn f(a) {\n  a\n}");
        let StmtKind::Expr(e) = &m.stmts[1].kind else {
            panic!()
        };
        assert_eq!(text(src, e.span), "if a { b } else if c { d }");
        let ExprKind::If {
            else_: Some(inner), ..
        } = &e.kind
        else {
            panic!()
        };
        assert_eq!(text(src, inner.span), "if c { d }");
    }

    // ----- errors and recovery -----

    #[test]
    fn error_messages_name_the_offending_token() {
        assert_eq!(
            error("f(a, b}"),
            "expected `)` after arguments, found `}` @ }"
        );
        assert_eq!(
            error("f(a"),
            "unexpected end of file, expected `)` after arguments @ "
        );
        assert_eq!(
            error("let x = "),
            "unexpected end of file, expected expression @ "
        );
        assert_eq!(error("let x = )"), "expected expression, found `)` @ )");
        assert_eq!(
            error("[1, 2"),
            "unexpected end of file, expected `]` after array elements @ "
        );
        assert_eq!(
            error("a[1"),
            "unexpected end of file, expected `]` after index @ "
        );
        assert_eq!(
            error("a."),
            "unexpected end of file, expected field or method name after `.` @ "
        );
        assert_eq!(
            error("fn f() {"),
            "unexpected end of file, expected `}` to close the block @ "
        );
        assert_eq!(error("}"), "unexpected `}` @ }");
        assert_eq!(error("let s = \"abc"), "unterminated string @ \"");
        assert_eq!(error("a /* b"), "unterminated block comment @ /*");
        assert_eq!(error("x = 1 @"), "unexpected character `@` @ @");
    }

    #[test]
    fn recovery_reports_several_errors() {
        let src = "let a = )\nlet b = 1\nf(x y)\nlet c = [1, 2\nfn g() {\n  let = 2\n  h(\n}\nlet d = 5 6";
        assert_eq!(
            errors(src),
            [
                "expected expression, found `)` @ )",
                "expected `)` after arguments, found `y` @ y",
                "expected `]` after array elements, found `fn` @ fn",
                "expected variable name after `let`, found `=` @ =",
                "expected expression, found `}` @ }",
                "expected newline or `;` after statement, found a number @ 6",
            ]
        );
    }

    #[test]
    fn recovery_inside_blocks_keeps_going() {
        let src = "fn f() {\n  a b\n  c d\n}\nfn g() { e f }";
        assert_eq!(errors(src).len(), 3);
        // Lexer and parser errors come out together, in source order.
        let src = "let a = 1 +\nlet s = \"\\q\"\nlet b = #";
        assert_eq!(
            errors(src),
            [
                "expected expression, found `let` @ let",
                "unknown escape `\\q` @ \\q",
                "unexpected character `#` @ #",
                "unexpected end of file, expected expression @ ",
            ]
        );
    }

    #[test]
    fn error_count_is_capped() {
        let src = "let = 1\n".repeat(1000);
        assert_eq!(errors(&src).len(), MAX_ERRORS);
        // Lexer errors late in the file do not crowd out parser errors early in it.
        let src = format!("let = 1\n{}", "@".repeat(1000));
        let errors = errors(&src);
        assert_eq!(errors.len(), MAX_ERRORS);
        assert_eq!(
            errors[0],
            "expected variable name after `let`, found `=` @ ="
        );
    }

    // ----- hostile input -----

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        for open in [
            "(", "[", "-", "!", "{", "[[(", "2 ** ", "spawn ", "defer ", "if a {", "|x| ", "\"${",
        ] {
            let src = open.repeat(100_000);
            let errors = errors(&src);
            assert!(
                errors.iter().any(|e| e.starts_with("nesting too deep")),
                "{open}: {errors:?}"
            );
            assert!(errors.len() <= 3, "{open}: {errors:?}");
        }
    }

    #[test]
    fn chains_inside_chains_count_toward_the_height() {
        /// `levels` chains of `links` links, each inside the first operand of the next.
        fn nested(link: &str, links: usize, levels: usize) -> String {
            (0..levels).fold("a".to_string(), |src, _| {
                format!("({src}{})", link.repeat(links))
            })
        }
        /// `levels` `else if` chains, each in the final `else` of the previous one.
        fn nested_ifs(levels: usize) -> String {
            (0..levels).fold("1".to_string(), |src, _| {
                let arms = " else if a { 1 }".repeat(900);
                format!("if a {{ 1 }}{arms} else {{ {src} }}")
            })
        }
        fn first_error(src: String) -> Option<String> {
            parse(&src).err().map(|e| e[0].message.clone())
        }
        // Each chain alone is short enough; nested four deep they are too tall. Siblings
        // do not add up. The trees are dropped recursively: give the thread room.
        let (refused, accepted) = std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(|| {
                let links = [" + a", ".b", "(1)", " && a"];
                let refused: Vec<_> = links
                    .map(|link| nested(link, 900, 4))
                    .into_iter()
                    .chain([nested_ifs(4)])
                    .map(first_error)
                    .collect();
                let accepted: Vec<_> = [
                    nested(" + a", 900, 2),
                    nested_ifs(2),
                    format!("[{}]", "a.b.c(1).d, ".repeat(5000)),
                    format!("a.b.c{}", " + (a.b.c)".repeat(MAX_CHAIN)),
                ]
                .map(first_error)
                .to_vec();
                (refused, accepted)
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(
            refused
                .iter()
                .all(|e| e.as_deref() == Some("nesting too deep")),
            "{refused:?}"
        );
        assert!(accepted.iter().all(Option::is_none), "{accepted:?}");
    }

    #[test]
    fn balanced_deep_nesting_reports_once() {
        let src = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(errors(&src), ["nesting too deep @ ("]);
        let src = format!("x = {}1{}\ny = )", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(
            errors(&src),
            ["nesting too deep @ [", "expected expression, found `)` @ )"]
        );
    }

    #[test]
    fn nesting_just_under_the_limit_parses() {
        // Each level costs one unit here (`(` is an expression nested in an expression).
        let depth = MAX_DEPTH - 2;
        let src = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
        module(&src);
        let src = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        module(&src);
        let src = format!("{}a{}", "{".repeat(depth - 1), "}".repeat(depth - 1));
        module(&src);
    }

    /// The deepest nesting the limit allows, of any construct, must parse on a thread
    /// with the default 2 MiB stack, even in a debug build.
    #[test]
    fn deepest_allowed_nesting_fits_the_stack() {
        let constructs = [
            ("", "(", ")"),
            ("", "[", "]"),
            ("", "{", "}"),
            ("", "if a {", "}"),
            ("", "if a {} else {", "}"),
            ("", "if a {} else if b {", "}"),
            ("", "let x = if a {", "}"),
            ("", "f(", ")"),
            ("", "x.y(", ")"),
            ("x = ", "{[", "]: 1}"),
            ("x = ", "P { a: ", "}"),
            ("", "fn f() {", "}"),
            ("", "impl P { fn f() {", "}}"),
            ("", "x.y(|z| ", ")"),
            ("", "\"${", "}\""),
            (
                "",
                "a || b && c == d < e | f ^ g & h << i .. j + k * (",
                ")",
            ),
            ("", "2 ** -", ""),
            ("", "spawn f(", ")"),
        ];
        let deepest = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                constructs.map(|(prefix, open, close)| {
                    (1..=MAX_DEPTH).rev().find(|&n| {
                        let src = format!("{prefix}{}1{}", open.repeat(n), close.repeat(n));
                        parse(&src).is_ok()
                    })
                })
            })
            .unwrap()
            .join()
            .unwrap();
        for ((_, open, _), n) in constructs.iter().zip(deepest) {
            // Each repetition costs one or two levels.
            assert!(n.is_some_and(|n| n >= MAX_DEPTH / 2 - 1), "{open}: {n:?}");
        }
    }

    #[test]
    fn long_chains_are_loops_up_to_the_chain_limit() {
        let chains = [
            ("1", " + 1"),
            ("f", "(1)"),
            ("if a { 1 }", " else if a { 1 }"),
        ];
        for (head, link) in chains {
            dismantle(module(&format!("{head}{}", link.repeat(MAX_CHAIN))));
            let errs = parse(&format!("{head}{}", link.repeat(100_000))).unwrap_err();
            assert!(
                errs[0].message.starts_with("expression too long"),
                "{head}: {errs:?}"
            );
        }
    }
}
