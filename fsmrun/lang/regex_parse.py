"""Regex front end for fsm.py: a recursive-descent parser to a small AST, and its Thompson NFA.

Character sets are bitmasks over alphabet indices (bit i = alphabet[i]), so `.` and classes are
resolved against the alphabet here and the automaton code never sees raw characters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Thompson states a pattern may expand to (bounded repetition copies its operand); past this the
# pattern is rejected before any automaton is built, so `a{10000000}` cannot exhaust memory.
MAX_EXPANDED_SIZE = 1_000_000

_BOUNDS = re.compile(r"(\d*)(,)?(\d*)", re.ASCII)
_CONTROL_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}


class RegexSyntaxError(ValueError):
    """Raised by the parser; fsm.py re-raises it as RegexError (message, position)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Empty:
    """The empty string."""


@dataclass(frozen=True)
class Chars:
    """One symbol from `mask` (bit i set = alphabet[i]); mask 0 matches nothing."""

    mask: int


@dataclass(frozen=True)
class Concat:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    """`item` repeated between `low` and `high` times (`high` None = unbounded)."""

    item: Node
    low: int
    high: int | None


Node = Empty | Chars | Concat | Alt | Repeat


def expanded_size(node: Node) -> int:
    """Upper bound on the Thompson states `node` expands to (repetitions copy their operand)."""
    if isinstance(node, Empty):
        return 1
    if isinstance(node, Chars):
        return 2
    if isinstance(node, Concat):
        return sum(expanded_size(item) for item in node.items) + 1
    if isinstance(node, Alt):
        return sum(expanded_size(option) for option in node.options) + 2
    copies = max(node.low, node.high if node.high is not None else node.low + 1, 1)
    return copies * (expanded_size(node.item) + 2) + 2


def shortest_length(node: Node) -> int | None:
    """Length of the shortest string `node` matches; None when it matches nothing."""
    if isinstance(node, Empty):
        return 0
    if isinstance(node, Chars):
        return 1 if node.mask else None
    if isinstance(node, Concat):
        lengths = [shortest_length(item) for item in node.items]
        return None if None in lengths else sum(lengths)  # type: ignore[arg-type]
    if isinstance(node, Alt):
        found = [n for n in map(shortest_length, node.options) if n is not None]
        return min(found) if found else None
    if node.low == 0:
        return 0
    item = shortest_length(node.item)
    return None if item is None else node.low * item


def longest_length(node: Node) -> float | None:
    """Length of the longest string `node` matches (math.inf when unbounded); None when it
    matches nothing."""
    if isinstance(node, Empty):
        return 0
    if isinstance(node, Chars):
        return 1 if node.mask else None
    if isinstance(node, Concat):
        lengths = [longest_length(item) for item in node.items]
        return None if None in lengths else sum(lengths)  # type: ignore[arg-type]
    if isinstance(node, Alt):
        found = [n for n in map(longest_length, node.options) if n is not None]
        return max(found) if found else None
    item = longest_length(node.item)
    if item is None:
        return 0 if node.low == 0 else None
    if item == 0:
        return 0
    return math.inf if node.high is None else node.high * item


def shortest_nonempty_length(node: Node) -> int | None:
    """Length of the shortest non-empty string `node` matches; None when it matches none."""
    if isinstance(node, Empty):
        return None
    if isinstance(node, Chars):
        return 1 if node.mask else None
    if isinstance(node, Concat):  # one item non-empty, the others as short as they go
        shortest = [shortest_length(item) for item in node.items]
        if None in shortest:
            return None
        total = sum(shortest)  # type: ignore[arg-type]
        found = [
            total - low + nonempty
            for item, low in zip(node.items, shortest, strict=True)
            if (nonempty := shortest_nonempty_length(item)) is not None
        ]
        return min(found) if found else None
    if isinstance(node, Alt):
        found = [n for n in map(shortest_nonempty_length, node.options) if n is not None]
        return min(found) if found else None
    item, nonempty = shortest_length(node.item), shortest_nonempty_length(node.item)
    if nonempty is None or item is None or (node.high is not None and node.high < 1):
        return None
    return nonempty + (max(node.low, 1) - 1) * item  # one copy non-empty, the rest shortest


def min_dfa_states(node: Node) -> int:
    """A lower bound on the states of the minimal DFA of `node`, found without building it.

    The states along a shortest accepted string are all different (a repeated one would give
    a shorter accepted string), and so are those along the longest one of a finite language
    (a repeat would be a cycle, making it infinite): so at least length + 1 states; and at
    least m states for a shortest non-empty accepted string of length m."""
    shortest, longest = shortest_length(node), longest_length(node)
    if shortest is None:  # the empty language: one (rejecting) state
        return 1
    known = [shortest + 1] + ([int(longest) + 1] if longest not in (None, math.inf) else [])
    # Along a shortest non-empty accepted string of length m, the states after 0..m-1 symbols
    # are all different (a repeat would cut out a loop and leave a shorter non-empty accepted
    # string): so at least m states, which bounds (a{100000})* too.
    nonempty = shortest_nonempty_length(node)
    return max(known + ([nonempty] if nonempty is not None else []))


class Parser:
    """Parses one pattern; `parse()` returns the AST or raises RegexSyntaxError.

    Grammar:  alt := concat ('|' concat)* ;  concat := repeat* ;
              repeat := atom (quantifier '?'?)? ;  atom := literal | '.' | class | group | escape
    """

    def __init__(self, pattern: str, alphabet: tuple[str, ...]) -> None:
        self.pattern = pattern
        self.pos = 0
        self.index = {symbol: i for i, symbol in enumerate(alphabet)}
        self.full_mask = (1 << len(alphabet)) - 1
        self.alphabet = alphabet

    def parse(self) -> Node:
        node = self._alternation()
        if self.pos < len(self.pattern):  # only a stray ')' stops an alternation early
            raise RegexSyntaxError("unbalanced parenthesis", self.pos)
        if expanded_size(node) > MAX_EXPANDED_SIZE:
            raise RegexSyntaxError(
                f"pattern too large (it would expand to more than {MAX_EXPANDED_SIZE:,} "
                "NFA states)",
                0,
            )
        return node

    def _peek(self) -> str | None:
        return self.pattern[self.pos] if self.pos < len(self.pattern) else None

    def _alternation(self) -> Node:
        options = [self._concatenation()]
        while self._peek() == "|":
            self.pos += 1
            options.append(self._concatenation())
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def _concatenation(self) -> Node:
        items: list[Node] = []
        while (c := self._peek()) is not None and c not in "|)":
            items.append(self._repetition())
        if not items:
            return Empty()
        return items[0] if len(items) == 1 else Concat(tuple(items))

    def _repetition(self) -> Node:
        if self._peek() in ("*", "+", "?", "{"):
            raise RegexSyntaxError("nothing to repeat", self.pos)
        node = self._atom()
        start = self.pos
        bounds = self._quantifier()
        if bounds is None:
            return node
        if self._peek() == "?":  # lazy: same language as the greedy form
            self.pos += 1
        if self._peek() in ("*", "+", "?", "{"):
            raise RegexSyntaxError("multiple repeat", self.pos)
        low, high = bounds
        node = Repeat(node, low, high)
        if expanded_size(node) > MAX_EXPANDED_SIZE:
            raise RegexSyntaxError(
                f"repetition too large (the pattern would expand to more than "
                f"{MAX_EXPANDED_SIZE:,} NFA states)",
                start,
            )
        return node

    def _quantifier(self) -> tuple[int, int | None] | None:
        c = self._peek()
        simple = {"*": (0, None), "+": (1, None), "?": (0, 1)}
        if c in simple:
            self.pos += 1
            return simple[c]
        if c != "{":
            return None
        start = self.pos
        close = self.pattern.find("}", start)
        if close < 0:
            raise RegexSyntaxError("unterminated repetition", start)
        bounds = _BOUNDS.fullmatch(self.pattern[start + 1 : close])
        if bounds is None or bounds.group(0) in ("", ","):
            raise RegexSyntaxError(
                "malformed repetition (expected {m}, {m,}, {,n} or {m,n})", start
            )
        low_text, comma, high_text = bounds.groups()
        low = int(low_text) if low_text else 0
        if comma is None:
            high: int | None = low
        else:
            high = int(high_text) if high_text else None
        if high is not None and high < low:
            raise RegexSyntaxError(f"min repeat {low} greater than max repeat {high}", start)
        self.pos = close + 1
        return low, high

    def _atom(self) -> Node:
        c = self.pattern[self.pos]
        start = self.pos
        if c == "(":
            return self._group()
        if c == "[":
            return self._char_class()
        self.pos += 1
        if c == ".":
            return Chars(self.full_mask)
        if c == "\\":
            c = self._escaped(start)
        return Chars(self._symbol_mask(c, start))

    def _group(self) -> Node:
        start = self.pos
        self.pos += 1
        if self.pattern.startswith("?", self.pos):
            if not self.pattern.startswith("?:", self.pos):
                raise RegexSyntaxError("unsupported group (only ( ) and (?: ) are allowed)", start)
            self.pos += 2
        node = self._alternation()
        if self._peek() != ")":
            raise RegexSyntaxError("unbalanced parenthesis", self.pos)
        self.pos += 1
        return node

    def _escaped(self, start: int) -> str:
        """The character after a backslash at `start` (self.pos is just past the backslash)."""
        if self.pos >= len(self.pattern):
            raise RegexSyntaxError("bad escape (end of pattern)", start)
        c = self.pattern[self.pos]
        self.pos += 1
        if c in _CONTROL_ESCAPES:
            return _CONTROL_ESCAPES[c]
        if c.isalnum() or c == "_":  # \d, \w, \b, backreferences ... are not supported
            raise RegexSyntaxError(f"unsupported escape \\{c}", start)
        return c

    def _symbol_mask(self, c: str, position: int) -> int:
        if c not in self.index:
            raise RegexSyntaxError(
                f"symbol {c!r} is not in the alphabet {''.join(self.alphabet)!r}", position
            )
        return 1 << self.index[c]

    def _char_class(self) -> Node:
        start = self.pos
        self.pos += 1
        negate = self._peek() == "^"
        if negate:
            self.pos += 1
        mask = 0
        first = True
        while True:
            c = self._peek()
            if c is None:
                raise RegexSyntaxError("unterminated character class", start)
            if c == "]" and not first:
                self.pos += 1
                break
            first = False
            item_start = self.pos
            low = self._class_char()
            is_range = (
                self._peek() == "-"
                and self.pos + 1 < len(self.pattern)
                and self.pattern[self.pos + 1] != "]"
            )
            if not is_range:
                mask |= self._symbol_mask(low, item_start)
                continue
            self.pos += 1
            high = self._class_char()
            if ord(high) < ord(low):
                raise RegexSyntaxError(f"bad character range {low}-{high}", item_start)
            # A range is an interval of code points; only alphabet symbols inside it count.
            for symbol, i in self.index.items():
                if ord(low) <= ord(symbol) <= ord(high):
                    mask |= 1 << i
        return Chars(self.full_mask & ~mask if negate else mask)

    def _class_char(self) -> str:
        c = self.pattern[self.pos]
        self.pos += 1
        if c == "\\":
            return self._escaped(self.pos - 1)
        return c


class ThompsonNFA:
    """Thompson NFA: each state has epsilon edges and at most one labelled edge.

    `label[q]` is the symbol mask of q's labelled edge (0: none) and `target[q]` its target.
    """

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.label: list[int] = []
        self.target: list[int] = []

    def _state(self) -> int:
        self.eps.append([])
        self.label.append(0)
        self.target.append(-1)
        return len(self.eps) - 1

    def build(self, node: Node) -> tuple[int, int]:
        """Add `node`'s fragment; returns its (entry, exit) states, the exit without out-edges."""
        if isinstance(node, Empty):
            q = self._state()
            return q, q
        if isinstance(node, Chars):
            entry, exit_ = self._state(), self._state()
            self.label[entry] = node.mask
            self.target[entry] = exit_
            return entry, exit_
        if isinstance(node, Concat):
            return self._chain([self.build(item) for item in node.items])
        if isinstance(node, Alt):
            entry, exit_ = self._state(), self._state()
            for option in node.options:
                a, b = self.build(option)
                self.eps[entry].append(a)
                self.eps[b].append(exit_)
            return entry, exit_
        parts = [self.build(node.item) for _ in range(node.low)]
        if node.high is None:
            if parts:  # x{m,} = x{m-1} x+: loop back over the last copy
                a, b = parts[-1]
                self.eps[b].append(a)
            else:
                a, b = self.build(node.item)
                entry, exit_ = self._state(), self._state()
                self.eps[entry] += [a, exit_]
                self.eps[b] += [a, exit_]
                parts.append((entry, exit_))
        elif node.high > node.low:
            # (x(x(x)?)?)?: nested optional copies that may each skip straight to the exit
            exit_ = self._state()
            entry = exit_
            for _ in range(node.high - node.low):
                a, b = self.build(node.item)
                skip = self._state()
                self.eps[skip] += [a, exit_]
                self.eps[b].append(entry)
                entry = skip
            parts.append((entry, exit_))
        if not parts:
            q = self._state()
            return q, q
        return self._chain(parts)

    def _chain(self, parts: list[tuple[int, int]]) -> tuple[int, int]:
        for (_, b), (a, _) in zip(parts, parts[1:], strict=False):
            self.eps[b].append(a)
        return parts[0][0], parts[-1][1]

    def closures(self, bit_of: list[int]) -> list[int]:
        """Epsilon closure of every state as a bitset over `bit_of` (0 for unimportant states).

        Tarjan's SCC algorithm (iterative) finishes strongly connected components in reverse
        topological order, so each component's closure is its own bits OR the closures of the
        components it reaches, all already computed: O(states + edges) big-int ORs.
        """
        eps = self.eps
        n = len(eps)
        index = [-1] * n
        low = [0] * n
        on_stack = [False] * n
        closure = [0] * n
        stack: list[int] = []
        counter = 0
        for root in range(n):
            if index[root] >= 0:
                continue
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack[root] = True
            work = [(root, 0)]
            while work:
                v, i = work[-1]
                if i < len(eps[v]):
                    work[-1] = (v, i + 1)
                    w = eps[v][i]
                    if index[w] < 0:
                        index[w] = low[w] = counter
                        counter += 1
                        stack.append(w)
                        on_stack[w] = True
                        work.append((w, 0))
                    elif on_stack[w] and index[w] < low[v]:
                        low[v] = index[w]
                    continue
                work.pop()
                if work and low[v] < low[work[-1][0]]:
                    low[work[-1][0]] = low[v]
                if low[v] != index[v]:
                    continue
                members = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    members.append(w)
                    if w == v:
                        break
                bits = 0
                for w in members:  # members' own closures are still 0 here
                    bits |= bit_of[w]
                    for x in eps[w]:
                        bits |= closure[x]
                for w in members:
                    closure[w] = bits
        return closure
