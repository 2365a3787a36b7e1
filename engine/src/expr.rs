//! The constraint language of `clgemm.schedule` (its `_compile`/`_eval_tree`), compiled once
//! into a small stack program so that checking a point costs a few dozen instructions.
//!
//! Grammar (Python's precedence, lowest first): `or` < `and` < `not` < comparisons (chained,
//! `a < b <= c`) < `+ -` < `* // %` < unary `-` < atoms (integer literal, name, `( )`).
//! Truthy = non-zero; `and`/`or`/`not`/comparisons give 0 or 1, exactly as `_eval_tree`.
//! `//` and `%` floor like Python's. Device limits are folded into constants at compile
//! time, so a program only ever loads schedule parameters.

use std::collections::HashMap;

/// An evaluation that Python would raise on (division by zero) or could not represent in
/// 64 bits. The space treats such a point as invalid rather than guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bin {
    Add,
    Sub,
    Mul,
    FloorDiv,
    Mod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Ast {
    Const(i64),
    Param(usize),
    Neg(Box<Ast>),
    Not(Box<Ast>),
    Bin(Bin, Box<Ast>, Box<Ast>),
    /// `first op0 x0 op1 x1 ...` (Python's chained comparison).
    Compare(Box<Ast>, Vec<(Cmp, Ast)>),
    And(Vec<Ast>),
    Or(Vec<Ast>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Const(i64),
    Load(u32),
    Neg,
    Not,
    /// Normalises the top of the stack to 0/1 (the value of `and`/`or`).
    Bool,
    Bin(Bin),
    Cmp(Cmp),
    /// If top is false: replace it by 0 and jump; else pop it (the `and` short-circuit).
    JumpIfFalse(u32),
    /// If top is true: replace it by 1 and jump; else pop it (the `or` short-circuit).
    JumpIfTrue(u32),
}

/// One compiled constraint.
#[derive(Debug, Clone)]
pub struct Program {
    ops: Vec<Op>,
    /// Highest parameter position the program reads, or None when it reads none: the space
    /// checks the rule as soon as that parameter is fixed during enumeration.
    pub last_param: Option<usize>,
    source: String,
}

const MAX_STACK: usize = 64;

impl Program {
    /// Compile `source`; `params` are the names bound per point (position = slot),
    /// `limits` the names folded to constants.
    pub fn compile(
        source: &str,
        params: &[String],
        limits: &HashMap<String, i64>,
    ) -> Result<Program, String> {
        let tokens = lex(source)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            params,
            limits,
            source,
        };
        let ast = parser.or_expr()?;
        if parser.pos != parser.tokens.len() {
            return Err(format!(
                "constraint {source:?}: unexpected {:?} after the end of the expression",
                parser.tokens[parser.pos]
            ));
        }
        let ast = fold(ast);
        let mut ops = Vec::new();
        emit(&ast, &mut ops);
        let depth = max_depth(&ops);
        if depth > MAX_STACK {
            return Err(format!(
                "constraint {source:?} nests too deeply ({depth} > {MAX_STACK}); split it into several rules"
            ));
        }
        let last_param = ops
            .iter()
            .filter_map(|op| match op {
                Op::Load(i) => Some(*i as usize),
                _ => None,
            })
            .max();
        Ok(Program {
            ops,
            last_param,
            source: source.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate with `values[i]` bound to parameter `i`. Slots the program does not read may
    /// hold anything.
    #[inline]
    pub fn eval(&self, values: &[i64]) -> Result<i64, EvalError> {
        let mut stack = [0i64; MAX_STACK];
        let mut sp = 0usize;
        let mut pc = 0usize;
        let ops = &self.ops;
        while pc < ops.len() {
            match ops[pc] {
                Op::Const(c) => {
                    stack[sp] = c;
                    sp += 1;
                }
                Op::Load(i) => {
                    stack[sp] = *values.get(i as usize).ok_or(EvalError)?;
                    sp += 1;
                }
                Op::Neg => stack[sp - 1] = stack[sp - 1].checked_neg().ok_or(EvalError)?,
                Op::Not => stack[sp - 1] = i64::from(stack[sp - 1] == 0),
                Op::Bool => stack[sp - 1] = i64::from(stack[sp - 1] != 0),
                Op::Bin(b) => {
                    sp -= 1;
                    stack[sp - 1] = binop(b, stack[sp - 1], stack[sp])?;
                }
                Op::Cmp(c) => {
                    sp -= 1;
                    stack[sp - 1] = i64::from(cmp(c, stack[sp - 1], stack[sp]));
                }
                Op::JumpIfFalse(t) => {
                    if stack[sp - 1] == 0 {
                        pc = t as usize;
                        continue;
                    }
                    sp -= 1;
                }
                Op::JumpIfTrue(t) => {
                    if stack[sp - 1] != 0 {
                        stack[sp - 1] = 1;
                        pc = t as usize;
                        continue;
                    }
                    sp -= 1;
                }
            }
            pc += 1;
        }
        Ok(stack[0])
    }

    /// True when the rule holds; evaluation errors count as "does not hold".
    #[inline]
    pub fn holds(&self, values: &[i64]) -> bool {
        matches!(self.eval(values), Ok(v) if v != 0)
    }
}

#[inline]
fn binop(b: Bin, x: i64, y: i64) -> Result<i64, EvalError> {
    match b {
        Bin::Add => x.checked_add(y).ok_or(EvalError),
        Bin::Sub => x.checked_sub(y).ok_or(EvalError),
        Bin::Mul => x.checked_mul(y).ok_or(EvalError),
        Bin::FloorDiv => {
            let q = x.checked_div(y).ok_or(EvalError)?;
            // Python floors; Rust truncates towards zero.
            Ok(if (x % y != 0) && ((x < 0) != (y < 0)) {
                q - 1
            } else {
                q
            })
        }
        Bin::Mod => {
            let r = x.checked_rem(y).ok_or(EvalError)?;
            // Python's remainder takes the divisor's sign.
            Ok(if r != 0 && ((r < 0) != (y < 0)) {
                r + y
            } else {
                r
            })
        }
    }
}

#[inline]
fn cmp(c: Cmp, x: i64, y: i64) -> bool {
    match c {
        Cmp::Eq => x == y,
        Cmp::Ne => x != y,
        Cmp::Lt => x < y,
        Cmp::Le => x <= y,
        Cmp::Gt => x > y,
        Cmp::Ge => x >= y,
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Name(String),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    const SYMS: [&str; 14] = [
        "//", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "%", "(", ")", "/",
    ];
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    'outer: while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                i += 1;
            }
            let text: String = src[start..i].chars().filter(|&ch| ch != '_').collect();
            let value = text.parse::<i64>().map_err(|_| {
                format!(
                    "constraint {src:?}: bad integer literal {:?}",
                    &src[start..i]
                )
            })?;
            out.push(Tok::Int(value));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Name(src[start..i].to_string()));
            continue;
        }
        for sym in SYMS {
            if src[i..].starts_with(sym) {
                if sym == "/" {
                    return Err(format!(
                        "constraint {src:?}: `/` is not allowed (integers only); use `//`"
                    ));
                }
                out.push(Tok::Sym(sym));
                i += sym.len();
                continue 'outer;
            }
        }
        let ch = src[i..].chars().next().unwrap_or('?');
        return Err(format!(
            "constraint {src:?}: unexpected character {ch:?}; allowed: integers, names, + - * // %, comparisons, and/or/not, parentheses"
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------- parser

struct Parser<'a> {
    tokens: Vec<Tok>,
    pos: usize,
    params: &'a [String],
    limits: &'a HashMap<String, i64>,
    source: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Name(s)) if s == word) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn err(&self, what: &str) -> String {
        match self.peek() {
            Some(t) => format!("constraint {:?}: expected {what}, found {t:?}", self.source),
            None => format!(
                "constraint {:?}: expected {what}, found the end",
                self.source
            ),
        }
    }

    fn or_expr(&mut self) -> Result<Ast, String> {
        let mut items = vec![self.and_expr()?];
        while self.eat_word("or") {
            items.push(self.and_expr()?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Ast::Const(0))
        } else {
            Ast::Or(items)
        })
    }

    fn and_expr(&mut self) -> Result<Ast, String> {
        let mut items = vec![self.not_expr()?];
        while self.eat_word("and") {
            items.push(self.not_expr()?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Ast::Const(0))
        } else {
            Ast::And(items)
        })
    }

    fn not_expr(&mut self) -> Result<Ast, String> {
        if self.eat_word("not") {
            return Ok(Ast::Not(Box::new(self.not_expr()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Ast, String> {
        let first = self.sum()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::Sym("==")) => Cmp::Eq,
                Some(Tok::Sym("!=")) => Cmp::Ne,
                Some(Tok::Sym("<")) => Cmp::Lt,
                Some(Tok::Sym("<=")) => Cmp::Le,
                Some(Tok::Sym(">")) => Cmp::Gt,
                Some(Tok::Sym(">=")) => Cmp::Ge,
                _ => break,
            };
            self.pos += 1;
            rest.push((op, self.sum()?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Ast::Compare(Box::new(first), rest)
        })
    }

    fn sum(&mut self) -> Result<Ast, String> {
        let mut left = self.term()?;
        loop {
            let op = if self.eat_sym("+") {
                Bin::Add
            } else if self.eat_sym("-") {
                Bin::Sub
            } else {
                return Ok(left);
            };
            left = Ast::Bin(op, Box::new(left), Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Result<Ast, String> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat_sym("*") {
                Bin::Mul
            } else if self.eat_sym("//") {
                Bin::FloorDiv
            } else if self.eat_sym("%") {
                Bin::Mod
            } else {
                return Ok(left);
            };
            left = Ast::Bin(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Ast, String> {
        if self.eat_sym("-") {
            return Ok(Ast::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Ast, String> {
        match self.peek().cloned() {
            Some(Tok::Int(v)) => {
                self.pos += 1;
                Ok(Ast::Const(v))
            }
            Some(Tok::Sym("(")) => {
                self.pos += 1;
                let inner = self.or_expr()?;
                if !self.eat_sym(")") {
                    return Err(self.err("`)`"));
                }
                Ok(inner)
            }
            Some(Tok::Name(name)) => {
                if matches!(name.as_str(), "and" | "or" | "not") {
                    return Err(self.err("an operand"));
                }
                self.pos += 1;
                // Python's True/False are constants, and `_eval_tree` takes int() of them.
                match name.as_str() {
                    "True" => return Ok(Ast::Const(1)),
                    "False" => return Ok(Ast::Const(0)),
                    _ => {}
                }
                if let Some(i) = self.params.iter().position(|p| *p == name) {
                    return Ok(Ast::Param(i));
                }
                if let Some(v) = self.limits.get(&name) {
                    return Ok(Ast::Const(*v));
                }
                let mut known: Vec<&str> = self.params.iter().map(String::as_str).collect();
                let mut limits: Vec<&str> = self.limits.keys().map(String::as_str).collect();
                limits.sort_unstable();
                known.extend(limits);
                Err(format!(
                    "constraint {:?} names {name:?}, which is neither a parameter nor a device limit; known names: {}",
                    self.source,
                    known.join(", ")
                ))
            }
            _ => Err(self.err("an operand")),
        }
    }
}

// ---------------------------------------------------------------- folding and code

fn as_const(a: &Ast) -> Option<i64> {
    if let Ast::Const(v) = a {
        Some(*v)
    } else {
        None
    }
}

/// Fold constant subtrees (limits are constants). A subtree whose evaluation would fail is
/// left unfolded, so the failure still happens at evaluation (and makes the point invalid).
fn fold(ast: Ast) -> Ast {
    match ast {
        Ast::Neg(x) => {
            let x = fold(*x);
            match as_const(&x).and_then(i64::checked_neg) {
                Some(v) => Ast::Const(v),
                None => Ast::Neg(Box::new(x)),
            }
        }
        Ast::Not(x) => {
            let x = fold(*x);
            match as_const(&x) {
                Some(v) => Ast::Const(i64::from(v == 0)),
                None => Ast::Not(Box::new(x)),
            }
        }
        Ast::Bin(op, l, r) => {
            let (l, r) = (fold(*l), fold(*r));
            if let (Some(a), Some(b)) = (as_const(&l), as_const(&r)) {
                if let Ok(v) = binop(op, a, b) {
                    return Ast::Const(v);
                }
            }
            Ast::Bin(op, Box::new(l), Box::new(r))
        }
        Ast::Compare(first, rest) => {
            let first = fold(*first);
            let rest: Vec<(Cmp, Ast)> = rest.into_iter().map(|(c, a)| (c, fold(a))).collect();
            let mut consts = vec![as_const(&first)];
            consts.extend(rest.iter().map(|(_, a)| as_const(a)));
            if consts.iter().all(Option::is_some) {
                let vals: Vec<i64> = consts.into_iter().flatten().collect();
                let ok = rest
                    .iter()
                    .enumerate()
                    .all(|(i, (c, _))| cmp(*c, vals[i], vals[i + 1]));
                return Ast::Const(i64::from(ok));
            }
            Ast::Compare(Box::new(first), rest)
        }
        Ast::And(items) => fold_bool(items, true),
        Ast::Or(items) => fold_bool(items, false),
        other => other,
    }
}

/// `and` (is_and) / `or` with constants removed where that keeps the meaning.
fn fold_bool(items: Vec<Ast>, is_and: bool) -> Ast {
    let mut kept = Vec::new();
    for item in items.into_iter().map(fold) {
        match as_const(&item) {
            // A deciding constant (false for `and`, true for `or`) ends the chain: the items
            // after it are never evaluated, in Python as here.
            Some(v) if (v != 0) != is_and => {
                if kept.is_empty() {
                    return Ast::Const(i64::from(!is_and));
                }
                kept.push(Ast::Const(v));
                break;
            }
            Some(_) => {} // neutral constant: drop
            None => kept.push(item),
        }
    }
    match kept.len() {
        0 => Ast::Const(i64::from(is_and)),
        // A lone operand that is already 0/1 needs no normalising `Bool`.
        1 if matches!(
            kept[0],
            Ast::Compare(..) | Ast::Not(_) | Ast::And(_) | Ast::Or(_)
        ) =>
        {
            kept.pop().unwrap_or(Ast::Const(0))
        }
        _ if is_and => Ast::And(kept),
        _ => Ast::Or(kept),
    }
}

fn emit(ast: &Ast, ops: &mut Vec<Op>) {
    match ast {
        Ast::Const(v) => ops.push(Op::Const(*v)),
        Ast::Param(i) => ops.push(Op::Load(*i as u32)),
        Ast::Neg(x) => {
            emit(x, ops);
            ops.push(Op::Neg);
        }
        Ast::Not(x) => {
            emit(x, ops);
            ops.push(Op::Not);
        }
        Ast::Bin(op, l, r) => {
            emit(l, ops);
            emit(r, ops);
            ops.push(Op::Bin(*op));
        }
        Ast::Compare(first, rest) => {
            // `a < b < c` == `(a < b) and (b < c)`: the middle operand is evaluated twice,
            // which is harmless because expressions have no side effects.
            let mut pairs = Vec::new();
            let mut left = first.as_ref().clone();
            for (c, right) in rest {
                pairs.push((left, *c, right.clone()));
                left = right.clone();
            }
            let mut patches = Vec::new();
            let n = pairs.len();
            for (i, (l, c, r)) in pairs.iter().enumerate() {
                emit(l, ops);
                emit(r, ops);
                ops.push(Op::Cmp(*c));
                if i + 1 < n {
                    patches.push(ops.len());
                    ops.push(Op::JumpIfFalse(0));
                }
            }
            let end = ops.len() as u32;
            for p in patches {
                ops[p] = Op::JumpIfFalse(end);
            }
        }
        Ast::And(items) | Ast::Or(items) => {
            let is_and = matches!(ast, Ast::And(_));
            let mut patches = Vec::new();
            for (i, item) in items.iter().enumerate() {
                emit(item, ops);
                if i + 1 < items.len() {
                    patches.push(ops.len());
                    ops.push(Op::Const(0)); // placeholder, patched below
                }
            }
            ops.push(Op::Bool);
            let end = ops.len() as u32;
            for p in patches {
                ops[p] = if is_and {
                    Op::JumpIfFalse(end)
                } else {
                    Op::JumpIfTrue(end)
                };
            }
        }
    }
}

/// Upper bound on the stack depth (linear scan; jumps only ever shorten the stack).
fn max_depth(ops: &[Op]) -> usize {
    let mut depth: isize = 0;
    let mut most: isize = 0;
    for op in ops {
        depth += match op {
            Op::Const(_) | Op::Load(_) => 1,
            Op::Bin(_) | Op::Cmp(_) | Op::JumpIfFalse(_) | Op::JumpIfTrue(_) => -1,
            Op::Neg | Op::Not | Op::Bool => 0,
        };
        most = most.max(depth);
    }
    most.max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(src: &str) -> Program {
        let params = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let mut limits = HashMap::new();
        limits.insert("lim".to_string(), 10);
        Program::compile(src, &params, &limits).unwrap()
    }

    fn ev(src: &str, vals: [i64; 3]) -> Result<i64, EvalError> {
        prog(src).eval(&vals)
    }

    #[test]
    fn arithmetic_and_precedence() {
        assert_eq!(ev("a + b * c", [1, 2, 3]), Ok(7));
        assert_eq!(ev("(a + b) * c", [1, 2, 3]), Ok(9));
        assert_eq!(ev("-a * b", [2, 3, 0]), Ok(-6));
        assert_eq!(ev("a - b - c", [10, 3, 2]), Ok(5));
        assert_eq!(ev("lim - a", [3, 0, 0]), Ok(7));
        assert_eq!(ev("--a", [3, 0, 0]), Ok(3));
    }

    #[test]
    fn floor_division_and_modulo_follow_python() {
        assert_eq!(ev("a // b", [-7, 2, 0]), Ok(-4));
        assert_eq!(ev("a % b", [-7, 2, 0]), Ok(1));
        assert_eq!(ev("a % b", [7, -2, 0]), Ok(-1));
        assert_eq!(ev("a // b", [7, -2, 0]), Ok(-4));
        assert_eq!(ev("a // b", [8, 2, 0]), Ok(4));
        assert_eq!(ev("a % b", [5, 0, 0]), Err(EvalError));
        assert!(!prog("a % b == 0").holds(&[5, 0, 0]));
    }

    #[test]
    fn comparisons_chain_and_booleans_are_0_or_1() {
        assert_eq!(ev("a < b < c", [1, 2, 3]), Ok(1));
        assert_eq!(ev("a < b < c", [1, 3, 3]), Ok(0));
        assert_eq!(ev("a < b > c", [1, 3, 2]), Ok(1));
        assert_eq!(ev("a and b", [5, 7, 0]), Ok(1));
        assert_eq!(ev("a or b", [0, 7, 0]), Ok(1));
        assert_eq!(ev("a or b", [0, 0, 0]), Ok(0));
        assert_eq!(ev("not a == b", [1, 2, 0]), Ok(1));
        assert_eq!(ev("not a and b", [0, 1, 0]), Ok(1));
        assert_eq!(ev("a == 0 or b // a > 1", [0, 5, 0]), Ok(1)); // short-circuit: no / by 0
        assert_eq!(ev("a and b and c", [1, 1, 0]), Ok(0));
        assert_eq!(ev("a or b and c", [0, 1, 1]), Ok(1));
    }

    #[test]
    fn limits_fold_to_constants() {
        let p = prog("lim * 2 >= 20 and a <= lim");
        assert_eq!(p.ops, vec![Op::Load(0), Op::Const(10), Op::Cmp(Cmp::Le)]);
        assert_eq!(p.last_param, Some(0));
        assert_eq!(prog("lim > 3").last_param, None);
        assert_eq!(prog("b + c > 3").last_param, Some(2));
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let params = vec!["a".to_string()];
        let limits = HashMap::new();
        let e = Program::compile("a / 2", &params, &limits).unwrap_err();
        assert!(e.contains("//"), "{e}");
        let e = Program::compile("zz > 1", &params, &limits).unwrap_err();
        assert!(e.contains("zz") && e.contains("known names"), "{e}");
        assert!(Program::compile("a >", &params, &limits).is_err());
        assert!(Program::compile("(a", &params, &limits).is_err());
        assert!(Program::compile("a ** 2", &params, &limits).is_err());
        assert!(Program::compile("a 2", &params, &limits).is_err());
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(ev("a * b", [i64::MAX, 2, 0]), Err(EvalError));
    }
}
