#!/usr/bin/env python3
"""make_man.py - writes driftrec(1) in troff from the program's own help
texts and ops/CONFIG.md, so the man page cannot drift from the code.
Usage: make_man.py DRIFTREC CONFIG_MD OUT"""
import subprocess
import sys

driftrec, config_md, out = sys.argv[1:4]


def help_of(*args):
    r = subprocess.run([driftrec, *args], capture_output=True, text=True)
    return (r.stdout or r.stderr).rstrip()


def esc(text):
    return "\n".join(("\\&" + l if l.startswith((".", "'")) else l).replace("\\", "\\\\")
                     if not l.startswith("\\&") else l for l in text.splitlines())


lines = [".TH DRIFTREC 1 \"\" \"driftrec\" \"User Commands\"",
         ".SH NAME", "driftrec \\- streaming online-learning recommender on Kafka",
         ".SH SYNOPSIS", ".nf", esc(help_of("help")), ".fi",
         ".SH DESCRIPTION",
         "driftrec reads user events as Avro from Kafka, learns from each one as it arrives "
         "(u = prior + per-user delta, ADWIN drift detection per user) and publishes a refreshed "
         "top-K list per user back to Kafka. State and consumed offsets are committed to RocksDB "
         "together, so a crash neither loses nor repeats an event's effect.",
         ".SH COMMANDS"]
for cmd in ("run", "demo", "broker", "adwin", "load", "replay", "report", "inspect", "lists", "erase", "dlq", "config"):
    lines += [".SS " + cmd, ".nf", esc(help_of(cmd, "--help")), ".fi"]
lines += [".SH SETTINGS", "Settings are read with --config FILE (key = value lines) and --set key=value. "
          "Keys starting with kafka. are passed to librdkafka unchanged.", ".TS", "l l l.",
          "key\tdefault\tmeaning"]
for row in open(config_md):
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    if len(cells) == 5 and cells[0].startswith("`"):
        lines.append("%s\t%s\tT{\n%s\nT}" % (cells[0].strip("`"), cells[2].strip("`") or "(empty)",
                                            cells[4].replace("`", "")))
lines += [".TE", ".SH FILES", "/etc/driftrec/driftrec.conf, /var/lib/driftrec (state), "
          "/usr/share/driftrec (alerting rules, dashboard).",
          ".SH SEE ALSO", "kcat(1), the README and docs/ of the driftrec sources."]
open(out, "w").write("\n".join(lines) + "\n")
