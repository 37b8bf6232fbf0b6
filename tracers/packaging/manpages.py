"""Man pages and bash completion generated from the argparse definitions.

    python3 -m tracers.packaging.manpages OUTDIR

writes bpfwatch.8, bpfwatch-<command>.8 for doctor, list, exporter and each
tracer (as bcc ships one man8 page per tool), and bash-completion/bpfwatch.
The options, their help and the examples are those `--help` prints, so the
pages cannot drift from the code. Needs no root and no bcc.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from tracers import __version__, cli, doctor, listing, options, report
from tracers.registry import tracer_classes


def roff(text: str) -> str:
    """Escape text for roff: backslashes, hyphens, and lines starting with . or '."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.splitlines())


def _option_head(action) -> str:
    flags = ", ".join(f"\\fB{roff(f)}\\fR" for f in action.option_strings)
    if action.nargs == 0:
        return flags
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    if action.choices and not action.metavar:
        metavar = "{" + ",".join(map(str, action.choices)) + "}"
    return f"{flags} \\fI{roff(str(metavar))}\\fR" if flags else f"\\fI{roff(str(metavar))}\\fR"


def _help(parser, action) -> str:
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help else ""


def page(parser: argparse.ArgumentParser, name: str, summary: str, see_also: list[str],
         preformatted: bool = False) -> str:
    """One man(7) page in section 8."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible builds: dpkg sets it
    today = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).date() if epoch \
        else datetime.date.today()
    usage = parser.format_usage().removeprefix("usage: ").strip().splitlines()
    usage = "\n".join([usage[0], *("    " + line.strip() for line in usage[1:])])
    out = [f'.TH {name.upper()} 8 "{today:%Y-%m-%d}" "bpfwatch {__version__}" "bpfwatch"',
           ".SH NAME", f"{roff(name)} \\- {roff(summary)}",
           ".SH SYNOPSIS", ".nf", roff(usage), ".fi"]
    if parser.description:
        text = roff(parser.description)
        out += [".SH DESCRIPTION", *([".nf", text, ".fi"] if preformatted else [text])]
    positionals = [a for a in parser._actions if not a.option_strings and a.help != argparse.SUPPRESS]
    if positionals:
        out.append(".SH ARGUMENTS")
        for a in positionals:
            out += [".TP", _option_head(a), roff(_help(parser, a))]
    flags = [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]
    if flags:
        out.append(".SH OPTIONS")
        for a in flags:
            out += [".TP", _option_head(a), roff(_help(parser, a))]
    if parser.epilog and parser.epilog.startswith("examples:"):
        out += [".SH EXAMPLES", ".nf", roff(parser.epilog.split("\n", 1)[1].rstrip()), ".fi"]
    out += [".SH SEE ALSO", ", ".join(f"\\fB{roff(s)}\\fR(8)" for s in see_also)]
    return "\n".join(out) + "\n"


def parsers() -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """command -> (its parser, its one-line summary)."""
    from exporters import daemon
    out = {
        "doctor": (report.build_parser(doctor.PROG, doctor.DESCRIPTION, doctor.EXAMPLES),
                   "what this kernel can do for BPF tracing, and why not"),
        "list": (report.build_parser(listing.PROG, listing.DESCRIPTION, listing.EXAMPLES),
                 "every tracer and the hook it would use here"),
        "exporter": (daemon.build_parser(), "serve tracer maps as Prometheus metrics"),
    }
    for name, tracer in tracer_classes().items():
        out[name] = (options.build_parser(tracer()), tracer.spec.summary)
    return out


def overview(commands: list[str]) -> str:
    """bpfwatch(8): the command list `bpfwatch` prints, and the pages to read next."""
    parser = argparse.ArgumentParser(prog="bpfwatch", usage="bpfwatch <command> [options]",
                                     description=cli.usage().split("\n", 2)[2].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False)
    return page(parser, "bpfwatch", "eBPF tracers for the terminal, their maps as Prometheus metrics",
                [f"bpfwatch-{c}" for c in commands], preformatted=True)


def completion(all_parsers: dict) -> str:
    """bash: the command first, then that command's options (files otherwise)."""
    cases = []
    for name, (parser, _) in all_parsers.items():
        opts = sorted({s for a in parser._actions if a.help != argparse.SUPPRESS
                       for s in a.option_strings})
        cases.append(f'        {name}) opts="{" ".join(opts)}" ;;')
    return "\n".join([
        "# bash completion for bpfwatch(8), generated from its argparse definitions",
        "_bpfwatch() {",
        '    local cur=${COMP_WORDS[COMP_CWORD]} opts',
        '    if [ "$COMP_CWORD" -eq 1 ]; then',
        f'        COMPREPLY=($(compgen -W "{" ".join(all_parsers)}" -- "$cur"))',
        "        return",
        "    fi",
        '    case ${COMP_WORDS[1]} in',
        *cases,
        "        *) return ;;",
        "    esac",
        '    [[ $cur == -* ]] && COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        "}",
        "complete -o default -F _bpfwatch bpfwatch",
        ""])


def write_all(outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    all_parsers = parsers()
    written = []
    for name, (parser, summary) in all_parsers.items():
        path = outdir / f"bpfwatch-{name}.8"
        path.write_text(page(parser, f"bpfwatch-{name}", summary, ["bpfwatch"]))
        written.append(path)
    written.append(outdir / "bpfwatch.8")
    written[-1].write_text(overview(list(all_parsers)))
    (outdir / "bash-completion").mkdir(exist_ok=True)
    written.append(outdir / "bash-completion" / "bpfwatch")
    written[-1].write_text(completion(all_parsers))
    return written


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python3 -m tracers.packaging.manpages OUTDIR", file=sys.stderr)
        return 2
    write_all(Path(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
