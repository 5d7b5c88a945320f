"""The command line's small parsers: `--set key=value`, `--sequences N|all`, `--site` names and
`--group` selectors. Each raises a located `SpecError` (the option's name as its path) for a value
it cannot read; the sites and groups are read with the grammar's own selector rule."""

from __future__ import annotations

from ..config import length_word
from ..errors import Span, SpecError
from ..syntax import ast, parse_selectors

SITE_HINT = "write e.g. L1.H2.pattern, L1.resid_out or logits"
GROUP_HINT = "name one layer's heads in the spec's selector syntax, e.g. L1.H[1,2,5], L1.H0..3 or L1.*"


def option_span(option: str, text: str) -> Span:
    """Where a bad command-line value is: the whole value, shown under the option's name."""
    return Span(path=option, line=1, column=1, end_line=1, end_column=len(text) + 1, line_text=text)


def settings(pairs: list[str]) -> dict[str, object]:
    """`--set key=value` options as `section.field` -> value (`coerce`d: numbers, booleans, lists)."""
    from ..experiment import coerce

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            span = option_span("--set", pair)
            raise SpecError(span, f"expected key=value, got '{pair}'", hint="for example --set train.lr=1e-4")
        out[key.strip()] = coerce(value)
    return out


def sequences_option(text: str) -> int | None:
    """`--sequences N` or `all` (None: every distinct training sequence where they can be enumerated)."""
    if text != "all" and not (text.isdigit() and int(text) > 0):
        raise SpecError(option_span("--sequences", text), f"cannot read --sequences '{text}'", hint="a positive number, or 'all'")
    return None if text == "all" else int(text)


def points_option(text: str | None) -> tuple[int, ...] | None:
    """`--points 100k,300k,1M`: training lengths (whole numbers, with the language's k and M suffixes)."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        word = part.strip()
        try:
            out.append(length_word(word))
        except ValueError:
            raise SpecError(option_span("--points", word or part), f"cannot read --points '{word}'",
                            hint="training lengths, e.g. --points 100k,300k,1M") from None
    return tuple(out)


def _site_text(layer: int | None, head: int | None, name: str) -> str:
    """A site as written on the command line: `L1.H2.pattern`, `L1.resid_out` or `embed`."""
    return ".".join(part for part in (layer is not None and f"L{layer}", head is not None and f"H{head}", name) if part)


def _literal(index) -> int | None:
    """The number of an index written as one literal (`1` in `L1`), else None."""
    return index.value if isinstance(index, ast.IndexSingle) and isinstance(index.value, int) else None


def _one_site(text: str, span: Span) -> tuple[int | None, int | None, str]:
    """(layer, head, site name) of one `--site` value, read with the grammar's selector rule; a value
    that names anything but one site (a range, a list, `*`, `except`, no site name) is refused."""
    try:
        selectors = parse_selectors(text, "--site")
    except SpecError:
        selectors = ()
    sel = selectors[0] if len(selectors) == 1 else None
    if isinstance(sel, ast.GlobalSite):
        return None, None, sel.name
    if isinstance(sel, ast.LayerSelector) and sel.site is not None and not sel.except_heads \
            and _literal(sel.layers) is not None and (sel.heads is None or _literal(sel.heads) is not None):
        return _literal(sel.layers), None if sel.heads is None else _literal(sel.heads), sel.site
    raise SpecError(span, f"cannot read site '{text}'", hint=SITE_HINT)


def site_names(texts: list[str], config) -> list[tuple[str, str, int | None]]:
    """Parse `--site` names (`L1.H2.pattern`, `L1.pattern`, `embed`) to (label, key, head)."""
    from ..semantics.resolve import NUMBERING
    from ..sites import site_table
    from ..syntax.hints import close
    from ..tasks import layout

    table = site_table(config.model, layout(config))
    out = []
    for text in texts:
        span = option_span("--site", text)
        layer, head, name = _one_site(text, span)
        if layer is not None and not 1 <= layer <= config.model.layers:
            raise SpecError(span, f"no layer L{layer} in this model",
                            hint=f"valid layers are L1..L{config.model.layers}; {NUMBERING}")
        key = f"L{layer}.{name}" if layer is not None else name
        if key not in table:
            names = {k.split(".")[-1]: info.per_head for k, info in table.items() if ("." in k) == (layer is not None)}
            near = close(name, names, "site names")
            if near.startswith("did you mean"):
                spelled = near.split("'")[1]
                near = f"did you mean '{_site_text(layer, head if names[spelled] else None, spelled)}'?"
            else:
                near += " (opto sites lists every site with its shape)"
            raise SpecError(span, f"no site '{text}' in this model", hint=near)
        if head is not None:
            if not table[key].per_head:
                raise SpecError(span, f"'{name}' is a layer site, not a head site", hint=f"write L{layer}.{name}")
            if head >= config.model.heads:
                raise SpecError(span, f"no head H{head} in this model", hint=f"heads are H0..H{config.model.heads - 1}; {NUMBERING}")
        out.append((text, key, head))
    return out


def parse_groups(texts: list[str], config):
    """`--group` options (the spec's selectors: `L1.H[1,2,5]`, `L1.*`, `L1.* except H0`) as analysis
    groups, resolved against the run's model."""
    from ..analysis.heads import Group
    from ..semantics.resolve import Resolver

    groups = []
    for text in texts:
        try:
            selectors = parse_selectors(text, "--group")
        except SpecError as err:
            raise SpecError(err.span, err.message, hint=GROUP_HINT) from None
        sites = [s for sel in selectors for s in Resolver(config).select(sel, "v")]
        layers = {s.layer for s in sites}
        if len(layers) != 1 or any(s.head is None or not s.site.endswith(".v") for s in sites):
            what = "heads of more than one layer" if len(layers) > 1 else "a site, not heads"
            raise SpecError(option_span("--group", text), f"a head group names one layer's heads; '{text}' names {what}",
                            hint=GROUP_HINT)
        groups.append(Group(layers.pop(), tuple(sorted({s.head for s in sites}))))
    return groups
