"""The `--json` field names README.md documents per tracer (prose parsed the
way it is written: backticked names; in parentheses only {...} lists)."""
import re

NOT_FIELDS = {"null", "true", "false"}


def fields_of(text: str) -> set[str]:
    """Field names in README prose: backticked names; inside parentheses only
    {...} field lists count (the rest are values such as `usecs`). "a|b"
    is kept whole: either name."""
    text = re.split(r"\b[Mm]etrics?\b|\bHooks?:", text)[0]

    def paren(m):
        return " ".join(re.findall(r"`[^`]*\{[^`]*\}[^`]*`", m.group(1)))
    text = re.sub(r"\(([^()]*)\)", paren, text)
    out = set()
    for span in re.findall(r"`([^`]+)`", text):
        if not span.startswith("-"):
            out |= set(re.findall(r"(?<![A-Za-z0-9_])[a-z][a-z0-9_]*(?:\|[a-z][a-z0-9_]*)*(?![A-Za-z0-9_])", span))
    return out - NOT_FIELDS


def documented(readme: str, tracers: list[str]) -> dict[str, set[str]]:
    """tracer -> the --json field names its README section documents."""
    found: dict[str, set[str]] = {}
    for section in re.split(r"\n(?=#{2,3} )", readme):
        heading = section.split("\n", 1)[0]
        named = [t for t in tracers if re.search(rf"\b{t}\b", heading)]
        paras = []
        for para in re.split(r"\n\s*\n", section):
            if paras and para.lstrip().startswith("- "):
                paras[-1] += "\n" + para  # "... as follows:" and its list
            else:
                paras.append(para)
        last = None
        for para in paras:
            if "`--json`" in para:
                text = para[para.index("`--json`"):]
                bullets = re.findall(r"^- (\w+): (.*?)(?=^- \w+:|\Z)", text, re.M | re.S)
                owners = [(n, b) for n, b in bullets if n in named] or \
                    [(n, text) for n in ([last] if last in named and " both" not in text else named)]
                for name, body in owners:
                    found.setdefault(name, set()).update(fields_of(body))
            mentioned = re.findall(r"bpfwatch (\w+)", para)
            if mentioned and mentioned[-1] in named:
                last = mentioned[-1]
    return found

