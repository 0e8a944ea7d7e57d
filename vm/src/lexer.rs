//! The lexer: turns Kiln source text into the flat token list the parser reads.
//!
//! Newlines are not tokens. Each token instead records whether a line break came before
//! it (`nl_before`), and the parser decides where a line break ends a statement, because
//! that depends on context the lexer does not have (inside `( )` it never does).
//! Interpolated strings are flattened into the same list — `StrStart`, literal pieces,
//! `InterpOpen` expression tokens `InterpClose`, `StrEnd` — and the open interpolations
//! live on a heap stack, so that nesting strings inside strings never recurses on the Rust
//! stack. Errors are collected and lexing goes on, so one pass reports every error.

use crate::parser::{SyntaxError, MAX_ERRORS};
use crate::source::Span;

/// What a token is. Keywords and punctuation are one variant each.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Int(i64),
    Float(f64),
    /// A string literal without interpolation, escapes decoded.
    Str(String),
    /// The opening quote of an interpolated string.
    StrStart,
    /// A literal piece of an interpolated string, escapes decoded.
    StrLit(String),
    /// `${` inside a string.
    InterpOpen,
    /// The `}` that closes an interpolation.
    InterpClose,
    /// The closing quote of an interpolated string.
    StrEnd,
    Ident(String),
    Let,
    Const,
    Fn,
    Return,
    If,
    Else,
    While,
    Loop,
    For,
    In,
    Break,
    Continue,
    True,
    False,
    Nil,
    Struct,
    Impl,
    SelfKw,
    Import,
    From,
    As,
    Try,
    Catch,
    Throw,
    Defer,
    Errdefer,
    Spawn,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Semi,
    Colon,
    Dot,
    DotDot,
    DotDotEq,
    Ellipsis,
    Question,
    Arrow,
    Plus,
    Minus,
    Star,
    StarStar,
    Slash,
    TildeSlash,
    Percent,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Assign,
    PlusEq,
    MinusEq,
    StarEq,
    SlashEq,
    TildeSlashEq,
    PercentEq,
    Bang,
    Tilde,
    Amp,
    Pipe,
    Caret,
    Shl,
    Shr,
    AndAnd,
    OrOr,
    Eof,
}

impl Tok {
    /// How error messages name this token: "`)`", "`foo`", "a number", "end of file".
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Int(_) | Tok::Float(_) => "a number".to_string(),
            Tok::Str(_) | Tok::StrStart => "a string".to_string(),
            Tok::StrLit(_) | Tok::StrEnd => "end of string".to_string(),
            Tok::Ident(name) => format!("`{name}`"),
            Tok::Eof => "end of file".to_string(),
            other => format!("`{}`", other.text()),
        }
    }

    pub(crate) fn is_keyword(&self) -> bool {
        keyword(self.text()).is_some()
    }

    /// The source text of a keyword or punctuation token (empty for the others).
    pub(crate) fn text(&self) -> &'static str {
        match self {
            Tok::Let => "let",
            Tok::Const => "const",
            Tok::Fn => "fn",
            Tok::Return => "return",
            Tok::If => "if",
            Tok::Else => "else",
            Tok::While => "while",
            Tok::Loop => "loop",
            Tok::For => "for",
            Tok::In => "in",
            Tok::Break => "break",
            Tok::Continue => "continue",
            Tok::True => "true",
            Tok::False => "false",
            Tok::Nil => "nil",
            Tok::Struct => "struct",
            Tok::Impl => "impl",
            Tok::SelfKw => "self",
            Tok::Import => "import",
            Tok::From => "from",
            Tok::As => "as",
            Tok::Try => "try",
            Tok::Catch => "catch",
            Tok::Throw => "throw",
            Tok::Defer => "defer",
            Tok::Errdefer => "errdefer",
            Tok::Spawn => "spawn",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::LBrace | Tok::InterpOpen => "{",
            Tok::RBrace | Tok::InterpClose => "}",
            Tok::Comma => ",",
            Tok::Semi => ";",
            Tok::Colon => ":",
            Tok::Dot => ".",
            Tok::DotDot => "..",
            Tok::DotDotEq => "..=",
            Tok::Ellipsis => "...",
            Tok::Question => "?",
            Tok::Arrow => "->",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::StarStar => "**",
            Tok::Slash => "/",
            Tok::TildeSlash => "~/",
            Tok::Percent => "%",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Assign => "=",
            Tok::PlusEq => "+=",
            Tok::MinusEq => "-=",
            Tok::StarEq => "*=",
            Tok::SlashEq => "/=",
            Tok::TildeSlashEq => "~/=",
            Tok::PercentEq => "%=",
            Tok::Bang => "!",
            Tok::Tilde => "~",
            Tok::Amp => "&",
            Tok::Pipe => "|",
            Tok::Caret => "^",
            Tok::Shl => "<<",
            Tok::Shr => ">>",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Int(_)
            | Tok::Float(_)
            | Tok::Str(_)
            | Tok::StrStart
            | Tok::StrLit(_)
            | Tok::StrEnd
            | Tok::Ident(_)
            | Tok::Eof => "",
        }
    }
}

/// One token with its position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) span: Span,
    /// A line break (possibly inside a comment) separates this token from the previous one.
    pub(crate) nl_before: bool,
}

/// Lexes a whole file. The token list always ends with `Eof`, and every `StrStart` and
/// `InterpOpen` has its closing token, even in a file with errors.
pub(crate) fn lex(src: &str) -> (Vec<Token>, Vec<SyntaxError>) {
    let mut lexer = Lexer {
        src,
        pos: 0,
        nl: false,
        interps: Vec::new(),
        tokens: Vec::new(),
        errors: Vec::new(),
    };
    lexer.run();
    (lexer.tokens, lexer.errors)
}

/// An interpolation `${ ... }` whose closing `}` has not been seen yet.
struct OpenInterp {
    /// `{`s opened inside the interpolation and not yet closed (map literals, blocks).
    braces: u32,
    /// Where the enclosing string's opening quote is, for "unterminated string".
    quote: usize,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    nl: bool,
    interps: Vec<OpenInterp>,
    tokens: Vec<Token>,
    errors: Vec<SyntaxError>,
}

impl Lexer<'_> {
    fn run(&mut self) {
        self.skip_file_header();
        loop {
            self.skip_trivia();
            match self.peek() {
                Some(c) => self.token(c),
                None => break,
            }
        }
        // Strings left open inside interpolations: report the outermost only, and close
        // them all so that the parser sees balanced tokens.
        if let Some(outermost) = self.interps.first() {
            self.error(outermost.quote, outermost.quote + 1, "unterminated string");
        }
        while self.interps.pop().is_some() {
            self.push(Tok::InterpClose, self.pos);
            self.push(Tok::StrEnd, self.pos);
        }
        self.push(Tok::Eof, self.pos);
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_byte_at(&self, offset: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + offset).copied()
    }

    /// Pushes a token spanning `start..self.pos`.
    fn push(&mut self, tok: Tok, start: usize) {
        self.push_at(tok, start, self.pos);
    }

    fn push_at(&mut self, tok: Tok, start: usize, end: usize) {
        self.tokens.push(Token {
            tok,
            span: Span::new(start, end),
            nl_before: std::mem::take(&mut self.nl),
        });
    }

    fn error(&mut self, start: usize, end: usize, message: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(SyntaxError {
                message: message.into(),
                span: Span::new(start, end),
            });
        }
    }

    /// A byte-order mark and a `#!` line are allowed at the very start, so that scripts
    /// can be made executable.
    fn skip_file_header(&mut self) {
        if self.src.starts_with('\u{feff}') {
            self.pos = '\u{feff}'.len_utf8();
        }
        if self.src[self.pos..].starts_with("#!") {
            self.pos = self.src[self.pos..]
                .find('\n')
                .map_or(self.src.len(), |i| self.pos + i);
        }
    }

    fn skip_trivia(&mut self) {
        while let Some(b) = self.peek_byte_at(0) {
            match (b, self.peek_byte_at(1)) {
                (b'\n', _) => {
                    self.nl = true;
                    self.pos += 1;
                }
                (b' ' | b'\t' | b'\r' | b'\x0c', _) => self.pos += 1,
                (b'/', Some(b'/')) => {
                    self.pos = self.src[self.pos..]
                        .find('\n')
                        .map_or(self.src.len(), |i| self.pos + i);
                }
                (b'/', Some(b'*')) => self.block_comment(),
                _ => break,
            }
        }
    }

    /// A `/* */` comment (not nested). One containing a line break counts as a line break.
    fn block_comment(&mut self) {
        let start = self.pos;
        match self.src[start + 2..].find("*/") {
            Some(i) => {
                let end = start + 2 + i + 2;
                self.nl |= self.src[start..end].contains('\n');
                self.pos = end;
            }
            None => {
                self.error(start, start + 2, "unterminated block comment");
                self.pos = self.src.len();
            }
        }
    }

    fn token(&mut self, c: char) {
        let start = self.pos;
        match c {
            '"' => {
                self.pos += 1;
                self.string_body(start, false);
            }
            '0'..='9' => self.number(),
            'a'..='z' | 'A'..='Z' | '_' => self.ident(),
            '{' => {
                if let Some(interp) = self.interps.last_mut() {
                    interp.braces += 1;
                }
                self.pos += 1;
                self.push(Tok::LBrace, start);
            }
            '}' => self.close_brace(),
            _ => match self.punct() {
                Some((tok, len)) => {
                    self.pos += len;
                    self.push(tok, start);
                }
                None => {
                    self.pos += c.len_utf8();
                    self.error(start, self.pos, format!("unexpected character `{c}`"));
                }
            },
        }
    }

    /// A `}` either closes a brace opened in code or ends the innermost interpolation, in
    /// which case the enclosing string continues.
    fn close_brace(&mut self) {
        let start = self.pos;
        self.pos += 1;
        match self.interps.last_mut() {
            Some(interp) if interp.braces == 0 => {
                let quote = interp.quote;
                self.interps.pop();
                self.push(Tok::InterpClose, start);
                self.string_body(quote, true);
            }
            Some(interp) => {
                interp.braces -= 1;
                self.push(Tok::RBrace, start);
            }
            None => self.push(Tok::RBrace, start),
        }
    }

    /// Operators and punctuation, longest match first: the token and its length.
    fn punct(&self) -> Option<(Tok, usize)> {
        let rest = &self.src.as_bytes()[self.pos..];
        let at = |i: usize| rest.get(i).copied();
        let tok3 = match (at(0)?, at(1), at(2)) {
            (b'.', Some(b'.'), Some(b'.')) => Some(Tok::Ellipsis),
            (b'.', Some(b'.'), Some(b'=')) => Some(Tok::DotDotEq),
            (b'~', Some(b'/'), Some(b'=')) => Some(Tok::TildeSlashEq),
            _ => None,
        };
        if let Some(tok) = tok3 {
            return Some((tok, 3));
        }
        let tok2 = match (at(0)?, at(1)) {
            (b'.', Some(b'.')) => Some(Tok::DotDot),
            (b'-', Some(b'>')) => Some(Tok::Arrow),
            (b'*', Some(b'*')) => Some(Tok::StarStar),
            // `~//` is `~` and a comment: `//` always starts a comment.
            (b'~', Some(b'/')) if at(2) != Some(b'/') => Some(Tok::TildeSlash),
            (b'=', Some(b'=')) => Some(Tok::EqEq),
            (b'!', Some(b'=')) => Some(Tok::NotEq),
            (b'<', Some(b'=')) => Some(Tok::Le),
            (b'>', Some(b'=')) => Some(Tok::Ge),
            (b'+', Some(b'=')) => Some(Tok::PlusEq),
            (b'-', Some(b'=')) => Some(Tok::MinusEq),
            (b'*', Some(b'=')) => Some(Tok::StarEq),
            (b'/', Some(b'=')) => Some(Tok::SlashEq),
            (b'%', Some(b'=')) => Some(Tok::PercentEq),
            (b'<', Some(b'<')) => Some(Tok::Shl),
            (b'>', Some(b'>')) => Some(Tok::Shr),
            (b'&', Some(b'&')) => Some(Tok::AndAnd),
            (b'|', Some(b'|')) => Some(Tok::OrOr),
            _ => None,
        };
        if let Some(tok) = tok2 {
            return Some((tok, 2));
        }
        let tok1 = match at(0)? {
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b',' => Tok::Comma,
            b';' => Tok::Semi,
            b':' => Tok::Colon,
            b'.' => Tok::Dot,
            b'?' => Tok::Question,
            b'+' => Tok::Plus,
            b'-' => Tok::Minus,
            b'*' => Tok::Star,
            b'/' => Tok::Slash,
            b'%' => Tok::Percent,
            b'<' => Tok::Lt,
            b'>' => Tok::Gt,
            b'=' => Tok::Assign,
            b'!' => Tok::Bang,
            b'~' => Tok::Tilde,
            b'&' => Tok::Amp,
            b'|' => Tok::Pipe,
            b'^' => Tok::Caret,
            _ => return None,
        };
        Some((tok1, 1))
    }

    fn ident(&mut self) {
        let start = self.pos;
        self.eat_while(|b| b.is_ascii_alphanumeric() || b == b'_');
        let text = &self.src[start..self.pos];
        let tok = keyword(text).unwrap_or_else(|| Tok::Ident(text.to_string()));
        self.push(tok, start);
    }

    fn eat_while(&mut self, pred: impl Fn(u8) -> bool) {
        while self.peek_byte_at(0).is_some_and(&pred) {
            self.pos += 1;
        }
    }

    fn number(&mut self) {
        let start = self.pos;
        let radix = match (self.peek_byte_at(0), self.peek_byte_at(1)) {
            (Some(b'0'), Some(b'x' | b'X')) => 16,
            (Some(b'0'), Some(b'b' | b'B')) => 2,
            _ => 10,
        };
        if radix == 10 {
            self.decimal(start);
        } else {
            self.pos += 2;
            self.eat_while(|b| b.is_ascii_alphanumeric() || b == b'_');
            let digits = &self.src[start + 2..self.pos];
            self.push_int(start, int_value(digits, radix));
        }
    }

    /// A decimal int or float. A `.` makes a float only when a digit follows it, so that
    /// `1..10` is a range and `1.abs()` a method call.
    fn decimal(&mut self, start: usize) {
        let digit_or_sep = |b: u8| b.is_ascii_digit() || b == b'_';
        self.eat_while(digit_or_sep);
        let mut is_float = false;
        if self.peek_byte_at(0) == Some(b'.')
            && self.peek_byte_at(1).is_some_and(|b| b.is_ascii_digit())
        {
            is_float = true;
            self.pos += 1;
            self.eat_while(digit_or_sep);
        }
        if matches!(self.peek_byte_at(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.peek_byte_at(1), Some(b'+' | b'-')));
            if self
                .peek_byte_at(1 + sign)
                .is_some_and(|b| b.is_ascii_digit())
            {
                is_float = true;
                self.pos += 1 + sign;
                self.eat_while(digit_or_sep);
            }
        }
        if self
            .peek_byte_at(0)
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.eat_while(|b| b.is_ascii_alphanumeric() || b == b'_');
            return self.bad_number(start);
        }
        let text = &self.src[start..self.pos];
        if is_float {
            let value = text.replace('_', "").parse().unwrap_or(f64::NAN);
            self.push(Tok::Float(value), start);
        } else {
            self.push_int(start, int_value(text, 10));
        }
    }

    fn push_int(&mut self, start: usize, value: Result<i64, BadInt>) {
        match value {
            Ok(value) => self.push(Tok::Int(value), start),
            Err(BadInt::Digit) => self.bad_number(start),
            Err(BadInt::TooLarge) => {
                self.error(start, self.pos, "integer literal too large");
                self.push(Tok::Int(0), start);
            }
        }
    }

    fn bad_number(&mut self, start: usize) {
        let text = &self.src[start..self.pos];
        self.error(start, self.pos, format!("invalid number literal `{text}`"));
        self.push(Tok::Int(0), start);
    }

    /// Lexes string contents from `self.pos` (just after the opening quote or an
    /// interpolation's `}`) up to the closing quote or the next `${`.
    fn string_body(&mut self, quote: usize, interpolated: bool) {
        let mut lit = String::new();
        let mut lit_start = self.pos;
        loop {
            let Some(c) = self.peek() else {
                self.error(quote, quote + 1, "unterminated string");
                return self.end_string(quote, interpolated, false, lit, lit_start);
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return self.end_string(quote, interpolated, true, lit, lit_start);
                }
                '\\' => self.escape(&mut lit),
                '$' if self.peek_byte_at(1) == Some(b'{') => {
                    if !interpolated {
                        self.push_at(Tok::StrStart, quote, quote + 1);
                    }
                    self.push_lit(&mut lit, lit_start, self.pos);
                    let open = self.pos;
                    self.pos += 2;
                    self.push(Tok::InterpOpen, open);
                    self.interps.push(OpenInterp { braces: 0, quote });
                    return;
                }
                _ => {
                    lit.push(c);
                    self.pos += c.len_utf8();
                }
            }
            if lit.is_empty() {
                lit_start = self.pos;
            }
        }
    }

    fn push_lit(&mut self, lit: &mut String, start: usize, end: usize) {
        if !lit.is_empty() {
            self.push_at(Tok::StrLit(std::mem::take(lit)), start, end);
        }
    }

    /// Finishes a string at `self.pos`, just after its closing quote if `closed`.
    fn end_string(
        &mut self,
        quote: usize,
        interpolated: bool,
        closed: bool,
        mut lit: String,
        lit_start: usize,
    ) {
        if interpolated {
            let close = self.pos - usize::from(closed);
            self.push_lit(&mut lit, lit_start, close);
            self.push(Tok::StrEnd, close);
        } else {
            self.push(Tok::Str(lit), quote);
        }
    }

    /// Decodes one escape sequence at `self.pos` (a backslash) into `lit`.
    fn escape(&mut self, lit: &mut String) {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else { return };
        self.pos += c.len_utf8();
        let decoded = match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '0' => '\0',
            '\\' | '"' | '\'' | '$' => c,
            'u' => match self.unicode_escape() {
                Some(ch) => ch,
                None => return self.error(start, self.pos, "invalid unicode escape"),
            },
            _ => return self.error(start, self.pos, format!("unknown escape `\\{c}`")),
        };
        lit.push(decoded);
    }

    /// The `{1F600}` part of `\u{1F600}`: 1 to 6 hex digits naming a Unicode scalar value.
    fn unicode_escape(&mut self) -> Option<char> {
        if self.peek_byte_at(0) != Some(b'{') {
            return None;
        }
        let digits_start = self.pos + 1;
        let close = self.src[digits_start..].find(|c: char| !c.is_ascii_hexdigit());
        let digits_end = close.map_or(self.src.len(), |i| digits_start + i);
        if self.src.as_bytes().get(digits_end) != Some(&b'}') {
            self.pos = digits_end;
            return None;
        }
        self.pos = digits_end + 1;
        let digits = &self.src[digits_start..digits_end];
        if digits.is_empty() || digits.len() > 6 {
            return None;
        }
        u32::from_str_radix(digits, 16)
            .ok()
            .and_then(char::from_u32)
    }
}

/// Why an int literal's digits have no value.
enum BadInt {
    /// Not a digit of the radix, or no digits at all.
    Digit,
    /// Above `i64::MAX`. `-9223372036854775808` is one too: `-` is an operator.
    TooLarge,
}

/// The value of an int literal's digits (underscores allowed).
fn int_value(digits: &str, radix: u32) -> Result<i64, BadInt> {
    let mut value: Option<i64> = Some(0);
    let mut any = false;
    for c in digits.chars().filter(|&c| c != '_') {
        let d = c.to_digit(radix).ok_or(BadInt::Digit)?;
        any = true;
        value = value
            .and_then(|v| v.checked_mul(i64::from(radix)))
            .and_then(|v| v.checked_add(i64::from(d)));
    }
    match value {
        _ if !any => Err(BadInt::Digit),
        Some(value) => Ok(value),
        None => Err(BadInt::TooLarge),
    }
}

fn keyword(text: &str) -> Option<Tok> {
    Some(match text {
        "let" => Tok::Let,
        "const" => Tok::Const,
        "fn" => Tok::Fn,
        "return" => Tok::Return,
        "if" => Tok::If,
        "else" => Tok::Else,
        "while" => Tok::While,
        "loop" => Tok::Loop,
        "for" => Tok::For,
        "in" => Tok::In,
        "break" => Tok::Break,
        "continue" => Tok::Continue,
        "true" => Tok::True,
        "false" => Tok::False,
        "nil" => Tok::Nil,
        "struct" => Tok::Struct,
        "impl" => Tok::Impl,
        "self" => Tok::SelfKw,
        "import" => Tok::Import,
        "from" => Tok::From,
        "as" => Tok::As,
        "try" => Tok::Try,
        "catch" => Tok::Catch,
        "throw" => Tok::Throw,
        "defer" => Tok::Defer,
        "errdefer" => Tok::Errdefer,
        "spawn" => Tok::Spawn,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        let (tokens, errors) = lex(src);
        assert_eq!(errors, [], "{src:?}");
        tokens
            .into_iter()
            .map(|t| t.tok)
            .filter(|t| *t != Tok::Eof)
            .collect()
    }

    fn one(src: &str) -> Tok {
        let mut tokens = toks(src);
        assert_eq!(tokens.len(), 1, "{src:?}: {tokens:?}");
        tokens.remove(0)
    }

    /// Errors as "message @ spanned text".
    fn errors(src: &str) -> Vec<String> {
        lex(src)
            .1
            .iter()
            .map(|e| {
                format!(
                    "{} @ {}",
                    e.message,
                    &src[e.span.start as usize..e.span.end as usize]
                )
            })
            .collect()
    }

    fn str_tok(s: &str) -> Tok {
        Tok::Str(s.to_string())
    }

    #[test]
    fn integers() {
        assert_eq!(one("42"), Tok::Int(42));
        assert_eq!(one("0"), Tok::Int(0));
        assert_eq!(one("0xff"), Tok::Int(255));
        assert_eq!(one("0XFF_ff"), Tok::Int(0xffff));
        assert_eq!(one("0b1010"), Tok::Int(10));
        assert_eq!(one("1_000_000"), Tok::Int(1_000_000));
        assert_eq!(one("9223372036854775807"), Tok::Int(i64::MAX));
        assert_eq!(one("0x7fff_ffff_ffff_ffff"), Tok::Int(i64::MAX));
    }

    #[test]
    fn floats() {
        assert_eq!(one("1.5"), Tok::Float(1.5));
        assert_eq!(one("1e9"), Tok::Float(1e9));
        assert_eq!(one("2.5e-3"), Tok::Float(2.5e-3));
        assert_eq!(one("1E+3"), Tok::Float(1e3));
        assert_eq!(one("1_0.2_5"), Tok::Float(10.25));
        assert_eq!(one("1e400"), Tok::Float(f64::INFINITY));
    }

    #[test]
    fn a_dot_needs_a_digit_to_make_a_float() {
        assert_eq!(toks("1..10"), [Tok::Int(1), Tok::DotDot, Tok::Int(10)]);
        assert_eq!(toks("1..=2"), [Tok::Int(1), Tok::DotDotEq, Tok::Int(2)]);
        assert_eq!(
            toks("1.abs()"),
            [
                Tok::Int(1),
                Tok::Dot,
                Tok::Ident("abs".into()),
                Tok::LParen,
                Tok::RParen
            ]
        );
        assert_eq!(
            toks("1.5.x"),
            [Tok::Float(1.5), Tok::Dot, Tok::Ident("x".into())]
        );
    }

    #[test]
    fn invalid_numbers() {
        let too_large = [
            "9223372036854775808",
            "0x8000000000000000",
            "99999999999999999999999",
        ];
        for src in too_large {
            assert_eq!(errors(src), [format!("integer literal too large @ {src}")]);
        }
        assert_eq!(
            errors("0xffffffffffffffffg"),
            ["invalid number literal `0xffffffffffffffffg` @ 0xffffffffffffffffg"]
        );
        assert_eq!(errors("12abc"), ["invalid number literal `12abc` @ 12abc"]);
        assert_eq!(errors("0x"), ["invalid number literal `0x` @ 0x"]);
        assert_eq!(errors("0xfg"), ["invalid number literal `0xfg` @ 0xfg"]);
        assert_eq!(errors("0b102"), ["invalid number literal `0b102` @ 0b102"]);
        assert_eq!(errors("1e"), ["invalid number literal `1e` @ 1e"]);
        assert_eq!(errors("1.5e+"), ["invalid number literal `1.5e` @ 1.5e"]);
    }

    #[test]
    fn identifiers_and_keywords() {
        assert_eq!(one("foo_Bar9"), Tok::Ident("foo_Bar9".into()));
        assert_eq!(one("_"), Tok::Ident("_".into()));
        assert_eq!(one("letx"), Tok::Ident("letx".into()));
        let keywords =
            "let const fn return if else while loop for in break continue true false nil \
                        struct impl self import from as try catch throw defer errdefer spawn";
        for word in keywords.split_whitespace() {
            let tok = one(word);
            assert_eq!(tok.text(), word);
            assert_eq!(keyword(word), Some(tok));
        }
    }

    #[test]
    fn punctuation_takes_the_longest_match() {
        let src = "( ) [ ] { } , ; : . .. ..= ... ? -> + - * ** / ~/ % == != < <= > >= = += -= *= \
                   /= ~/= %= ! ~ & | ^ << >> && ||";
        let texts: Vec<&str> = toks(src).iter().map(Tok::text).collect();
        assert_eq!(texts, src.split_whitespace().collect::<Vec<_>>());
        assert_eq!(toks("a...b").len(), 3);
        assert_eq!(
            toks("x<<=y"),
            [
                Tok::Ident("x".into()),
                Tok::Shl,
                Tok::Assign,
                Tok::Ident("y".into())
            ]
        );
    }

    #[test]
    fn comments() {
        assert_eq!(
            toks("a // b\nc"),
            [Tok::Ident("a".into()), Tok::Ident("c".into())]
        );
        assert_eq!(
            toks("a /* b */ c"),
            [Tok::Ident("a".into()), Tok::Ident("c".into())]
        );
        assert_eq!(toks("/* /* */ a"), [Tok::Ident("a".into())]);
        assert_eq!(toks("a ~// c"), [Tok::Ident("a".into()), Tok::Tilde]);
        assert_eq!(
            toks("a ~/ b"),
            [
                Tok::Ident("a".into()),
                Tok::TildeSlash,
                Tok::Ident("b".into())
            ]
        );
        assert_eq!(errors("a /* b"), ["unterminated block comment @ /*"]);
    }

    #[test]
    fn line_breaks_are_flags_on_the_next_token() {
        let (tokens, _) = lex("a b\nc // x\n d /*\n*/ e /* */ f\n");
        let flags: Vec<bool> = tokens.iter().map(|t| t.nl_before).collect();
        assert_eq!(flags, [false, false, true, true, true, false, true]);
        assert_eq!(tokens.last().map(|t| &t.tok), Some(&Tok::Eof));
    }

    #[test]
    fn spans_are_byte_ranges() {
        let src = "let é = \"ü\" + 10";
        let (tokens, _) = lex(src);
        let texts: Vec<&str> = tokens
            .iter()
            .map(|t| &src[t.span.start as usize..t.span.end as usize])
            .collect();
        // `é` is not an identifier character: it is an error and no token.
        assert_eq!(texts, ["let", "=", "\"ü\"", "+", "10", ""]);
    }

    #[test]
    fn string_escapes() {
        assert_eq!(one(r#""a\nb\tc\rd\0e""#), str_tok("a\nb\tc\rd\0e"));
        assert_eq!(one(r#""\\ \" \' \$""#), str_tok("\\ \" ' $"));
        assert_eq!(one(r#""\u{1F600}\u{41}\u{0}""#), str_tok("😀A\0"));
        assert_eq!(one("\"ü😀\""), str_tok("ü😀"));
        assert_eq!(one("\"two\nlines\""), str_tok("two\nlines"));
        assert_eq!(one(r#""cost: $5 {x}""#), str_tok("cost: $5 {x}"));
        assert_eq!(one(r#""\${x}""#), str_tok("${x}"));
    }

    #[test]
    fn bad_escapes() {
        assert_eq!(errors(r#""a\qb""#), ["unknown escape `\\q` @ \\q"]);
        assert_eq!(
            errors(r#""\u{110000}""#),
            ["invalid unicode escape @ \\u{110000}"]
        );
        assert_eq!(
            errors(r#""\u{D800}""#),
            ["invalid unicode escape @ \\u{D800}"]
        );
        assert_eq!(errors(r#""\u{}""#), ["invalid unicode escape @ \\u{}"]);
        assert_eq!(
            errors(r#""\u{1234567}""#),
            ["invalid unicode escape @ \\u{1234567}"]
        );
        assert_eq!(errors(r#""\u1234""#), ["invalid unicode escape @ \\u"]);
        assert_eq!(errors(r#""\u{12""#), ["invalid unicode escape @ \\u{12"]);
        // The rest of the string is still decoded.
        assert_eq!(lex(r#""a\qb""#).0[0].tok, str_tok("ab"));
    }

    #[test]
    fn unterminated_strings() {
        assert_eq!(errors("x = \"abc"), ["unterminated string @ \""]);
        assert_eq!(errors("\"abc\\"), ["unterminated string @ \""]);
        assert_eq!(errors("\"a ${b"), ["unterminated string @ \""]);
        assert_eq!(errors("\"a ${\"b ${c"), ["unterminated string @ \""]);
        // Tokens stay balanced for the parser.
        let (tokens, _) = lex("\"a ${b");
        let kinds: Vec<Tok> = tokens.into_iter().map(|t| t.tok).collect();
        assert_eq!(
            kinds,
            [
                Tok::StrStart,
                Tok::StrLit("a ".into()),
                Tok::InterpOpen,
                Tok::Ident("b".into()),
                Tok::InterpClose,
                Tok::StrEnd,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn interpolation_is_flattened() {
        assert_eq!(
            toks(r#""x = ${x + 1}!""#),
            [
                Tok::StrStart,
                Tok::StrLit("x = ".into()),
                Tok::InterpOpen,
                Tok::Ident("x".into()),
                Tok::Plus,
                Tok::Int(1),
                Tok::InterpClose,
                Tok::StrLit("!".into()),
                Tok::StrEnd
            ]
        );
        assert_eq!(
            toks(r#""${a}""#),
            [
                Tok::StrStart,
                Tok::InterpOpen,
                Tok::Ident("a".into()),
                Tok::InterpClose,
                Tok::StrEnd
            ]
        );
    }

    #[test]
    fn interpolation_nests_strings_and_braces() {
        assert_eq!(
            toks(r#""${m["k"]}""#),
            [
                Tok::StrStart,
                Tok::InterpOpen,
                Tok::Ident("m".into()),
                Tok::LBracket,
                str_tok("k"),
                Tok::RBracket,
                Tok::InterpClose,
                Tok::StrEnd
            ]
        );
        assert_eq!(
            toks(r#""${ {a: "${b}"} }""#),
            [
                Tok::StrStart,
                Tok::InterpOpen,
                Tok::LBrace,
                Tok::Ident("a".into()),
                Tok::Colon,
                Tok::StrStart,
                Tok::InterpOpen,
                Tok::Ident("b".into()),
                Tok::InterpClose,
                Tok::StrEnd,
                Tok::RBrace,
                Tok::InterpClose,
                Tok::StrEnd
            ]
        );
    }

    #[test]
    fn interpolation_spans() {
        let src = r#"  "ab${x}cd""#;
        let (tokens, _) = lex(src);
        let texts: Vec<&str> = tokens
            .iter()
            .map(|t| &src[t.span.start as usize..t.span.end as usize])
            .collect();
        assert_eq!(texts, ["\"", "ab", "${", "x", "}", "cd", "\"", ""]);
    }

    #[test]
    fn unexpected_characters() {
        assert_eq!(errors("a @ b"), ["unexpected character `@` @ @"]);
        assert_eq!(errors("#x"), ["unexpected character `#` @ #"]);
        assert_eq!(errors("π"), ["unexpected character `π` @ π"]);
    }

    #[test]
    fn file_header() {
        assert_eq!(toks("#!/usr/bin/env kiln\nx"), [Tok::Ident("x".into())]);
        assert_eq!(toks("\u{feff}x"), [Tok::Ident("x".into())]);
        assert_eq!(toks("\u{feff}#!kiln"), []);
    }

    #[test]
    fn describe_names_tokens_for_messages() {
        assert_eq!(Tok::RParen.describe(), "`)`");
        assert_eq!(Tok::Ident("x".into()).describe(), "`x`");
        assert_eq!(Tok::Let.describe(), "`let`");
        assert_eq!(Tok::Int(1).describe(), "a number");
        assert_eq!(str_tok("s").describe(), "a string");
        assert_eq!(Tok::InterpClose.describe(), "`}`");
        assert_eq!(Tok::Eof.describe(), "end of file");
    }

    #[test]
    fn hostile_input_does_not_recurse() {
        let src = "\"${".repeat(100_000);
        let (tokens, errors) = lex(&src);
        assert_eq!(errors.len(), 1);
        assert_eq!(tokens.len(), 100_000 * 4 + 1);
        let (tokens, _) = lex(&"(".repeat(100_000));
        assert_eq!(tokens.len(), 100_001);
    }
}
