"""Parser for Qlib's expression strings: ``"Mean($close, 5)/$close"`` -> :class:`Expr`.

Grammar (Python's precedence, which is what Qlib's ``eval``-based parser gives)::

    expr       := additive [ (">" | "<") additive ]
    additive   := term { ("+" | "-") term }
    term       := unary { ("*" | "/") unary }
    unary      := ("-" | "+") unary | primary
    primary    := NUMBER | "$" FIELD | NAME "(" expr { "," expr } ")" | "(" expr ")"

Operator names are those of :data:`~quant_core.features.expressions.OPERATORS`; windows and
shifts must be integer literals, a quantile's ``q`` a number literal.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from quant_core.features.expressions import (
    FIELDS,
    OPERATORS,
    Const,
    Expr,
    FeatureSetError,
    Field,
    Gt,
    Lt,
    Neg,
)

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | \$(?P<field>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>>=|<=|==|!=|&|\||\*\*|[-+*/(),<>])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number", "field", "name", "op", "end"
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            start = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise FeatureSetError(f"cannot parse {text!r}: unexpected character {text[start]!r} at {start}")
        tokens.append(_Token(m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    # -- token helpers ---------------------------------------------------------------------------
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, message: str, tok: _Token | None = None) -> FeatureSetError:
        tok = tok or self.peek()
        where = "at the end" if tok.kind == "end" else f"at {tok.pos} ({tok.text!r})"
        return FeatureSetError(f"cannot parse {self.text!r}: {message} {where}")

    def expect(self, text: str) -> None:
        tok = self.peek()
        if tok.kind != "op" or tok.text != text:
            raise self.error(f"expected {text!r}")
        self.take()

    # -- grammar -----------------------------------------------------------------------------------
    def parse(self) -> Expr:
        expr = self.expr()
        if self.peek().kind != "end":
            raise self.error("unexpected token")
        return expr

    def expr(self) -> Expr:
        left = self.additive()
        tok = self.peek()
        if tok.kind == "op" and tok.text in (">", "<"):
            self.take()
            right = self.additive()
            left = Gt(left, right) if tok.text == ">" else Lt(left, right)
            tok = self.peek()
        if tok.kind == "op" and tok.text in (">=", "<=", "==", "!=", "&", "|", "**", ">", "<"):
            raise FeatureSetError(
                f"cannot parse {self.text!r}: unknown operator {tok.text!r} at {tok.pos} "
                "(supported infix operators: + - * / > <)"
            )
        return left

    def additive(self) -> Expr:
        left = self.term()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.take().text
            right = self.term()
            left = left + right if op == "+" else left - right
        return left

    def term(self) -> Expr:
        left = self.unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "/"):
            op = self.take().text
            right = self.unary()
            left = left * right if op == "*" else left / right
        return left

    def unary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("-", "+"):
            self.take()
            operand = self.unary()
            if tok.text == "+":
                return operand
            return Const(-operand.value) if isinstance(operand, Const) else Neg(operand)
        return self.primary()

    def primary(self) -> Expr:
        tok = self.take()
        if tok.kind == "number":
            return Const(float(tok.text))
        if tok.kind == "field":
            if tok.text not in FIELDS:
                raise FeatureSetError(
                    f"unknown field '${tok.text}' in {self.text!r}; known fields: "
                    + ", ".join(f"${f}" for f in FIELDS)
                )
            return Field(tok.text)
        if tok.kind == "name":
            return self.call(tok)
        if tok.kind == "op" and tok.text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        if tok.kind == "op" and tok.text in ("**", "&", "|", ">=", "<=", "==", "!="):
            raise FeatureSetError(
                f"cannot parse {self.text!r}: unknown operator {tok.text!r} at {tok.pos} "
                "(supported infix operators: + - * / > <)"
            )
        raise self.error("expected a number, a $field, an operator call or '('", tok)

    def call(self, name: _Token) -> Expr:
        if name.text not in OPERATORS:
            raise FeatureSetError(
                f"unknown operator {name.text!r} in {self.text!r}; known operators: "
                + ", ".join(sorted(OPERATORS))
            )
        self.expect("(")
        args = [self.expr()]
        while self.peek().kind == "op" and self.peek().text == ",":
            self.take()
            args.append(self.expr())
        self.expect(")")
        cls, kind = OPERATORS[name.text]
        arity = {"unary": 1, "binary": 2, "rolling": 2, "shift": 2, "quantile": 3, "pair": 3}[kind]
        if len(args) != arity:
            raise FeatureSetError(f"{name.text} takes {arity} argument(s), got {len(args)} in {self.text!r}")
        if kind in ("unary",):
            return cls(args[0])  # type: ignore[call-arg]
        if kind == "binary":
            return cls(args[0], args[1])  # type: ignore[call-arg]
        if kind in ("rolling", "shift"):
            return cls(args[0], self.integer(name.text, args[1]))  # type: ignore[call-arg]
        if kind == "quantile":
            return cls(args[0], self.integer(name.text, args[1]), self.number(name.text, args[2]))  # type: ignore[call-arg]
        return cls(args[0], args[1], self.integer(name.text, args[2]))  # type: ignore[call-arg]

    def integer(self, op: str, arg: Expr) -> int:
        if not isinstance(arg, Const) or not math.isfinite(arg.value) or arg.value != int(arg.value):
            what = "shift" if op == "Ref" else "window"
            raise FeatureSetError(f"{op}: the {what} must be an integer literal, got {arg} in {self.text!r}")
        return int(arg.value)

    def number(self, op: str, arg: Expr) -> float:
        if not isinstance(arg, Const):
            raise FeatureSetError(f"{op}: expected a number literal, got {arg} in {self.text!r}")
        return arg.value


def parse_expression(text: str) -> Expr:
    """Parse a Qlib-style expression string.

    Args:
        text: e.g. ``"Corr($close, Log($volume+1), 20)"`` or ``"Ref($close, -2)/Ref($close, -1) - 1"``.

    Returns:
        The expression tree. ``str(tree)`` parses back to an equal tree.

    Raises:
        FeatureSetError: a syntax error, an unknown field or operator, a wrong number of arguments,
            a non-integer or non-positive window.
    """
    if not isinstance(text, str) or not text.strip():
        raise FeatureSetError(f"an expression must be a non-empty string, got {text!r}")
    return _Parser(text).parse()
