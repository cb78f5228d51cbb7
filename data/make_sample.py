#!/usr/bin/env python3
"""Regenerate data/sample.jsonl from the WordNet 3.0 database.

The source is Debian's `wordnet-base` package (Princeton WordNet 3.0, WordNet
3.0 licence, see data/README.md and data/WORDNET-LICENSE.txt). Get it with
either of:

    apt-get update && apt-get install -y wordnet-base      # -> /usr/share/wordnet
    # or, without installing:
    apt-get update && apt-get download wordnet-base
    dpkg -x wordnet-base_*.deb /tmp/wn                     # -> /tmp/wn/usr/share/wordnet

then run:

    python3 data/make_sample.py [--wordnet-dir /usr/share/wordnet] [--out data/sample.jsonl]

Only the Python standard library is used. The output is deterministic: the
same WordNet files always give a byte-identical sample.jsonl.

What is selected: one record per synset (word sense). A synset qualifies if
one of its senses was seen at least once in the sense-tagged SemCor corpus
(WordNet's cntlist.rev), i.e. it is a sense people actually use, and its
gloss is 5-60 words long. Senses marked in WordNet as slang, colloquial,
disparaging, ethnic slurs or obscene, and glosses containing words such as
"offensive" or "vulgar", are dropped. Up to MAX_PER_CATEGORY of the most
frequent senses are kept per lexicographer category (animal, food,
artifact, ...; see MAX_PER_CATEGORY) so that no category dominates.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import unicodedata

POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
POS_NAMES = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
SS_TYPE_NUM = {"n": 1, "v": 2, "a": 3, "r": 4, "s": 5}

# WordNet lexicographer file numbers -> category names (lexnames(5WN)).
LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food",
    "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession",
    "noun.process", "noun.quantity", "noun.relation", "noun.shape",
    "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change",
    "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion",
    "verb.motion", "verb.perception", "verb.possession", "verb.social",
    "verb.stative", "verb.weather", "adj.ppl",
]
CATEGORY_RENAME = {
    "adj.all": "general", "adj.pert": "relational", "adj.ppl": "participial",
    "adv.all": "general", "noun.Tops": "top",
}

# Usage-domain synsets (";u" pointers) whose members we do not want in a demo.
EXCLUDED_USAGE = {
    "06717170",  # disparagement, derogation
    "06718862",  # ethnic slur
    "07124340",  # obscenity, vulgarism
    "07157273",  # slang, cant, jargon
    "07075172",  # colloquialism
}
EXCLUDED_GLOSS = re.compile(
    r"\b(offensive|slur|vulgar|obscen\w*|derogatory|disparag\w*|contemptuous|"
    r"taboo|slang|racist|genital\w*|penis|vagina|sexual\w*|copulat\w*|"
    r"masturbat\w*|prostitut\w*|excrement|feces|faeces|urinat\w*|defecat\w*)\b",
    re.IGNORECASE,
)

# Crude synonyms left out of the word list shown before a (harmless) gloss.
CRUDE_SYNONYMS = {"piss", "arse", "knocker"}

MIN_WORDS, MAX_WORDS = 5, 60
# Most frequent senses kept per lexicographer category: nouns (concrete,
# varied topics) get the most room, verbs less, adjectives/adverbs least.
MAX_PER_CATEGORY = {"noun": 400, "verb": 200, "adj": 150, "adv": 150}
MAX_WORDS_SHOWN = 3  # synonyms shown before the gloss in the text


def clean(s: str) -> str:
    s = unicodedata.normalize("NFC", s)
    s = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in s)
    return re.sub(r"\s+", " ", s).strip()


def parse_data_file(path: str):
    """Yield dicts for each synset line of a WordNet data.* file."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  "):  # licence header
                continue
            body, _, gloss = line.partition(" | ")
            fields = body.split()
            offset, lex_filenum, ss_type = fields[0], int(fields[1]), fields[2]
            w_cnt = int(fields[3], 16)
            words = []
            i = 4
            for _ in range(w_cnt):
                words.append((fields[i], int(fields[i + 1], 16)))
                i += 2
            p_cnt = int(fields[i])
            i += 1
            pointers = []
            for _ in range(p_cnt):
                pointers.append(tuple(fields[i:i + 4]))  # symbol, offset, pos, src/tgt
                i += 4
            yield {
                "offset": offset,
                "lex_filenum": lex_filenum,
                "ss_type": ss_type,
                "words": words,
                "pointers": pointers,
                "gloss": gloss.strip(),
            }


def lemma_of(word: str) -> str:
    return re.sub(r"\([a-z]+\)$", "", word)  # strip adjective markers like (p)


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wordnet-dir", default="/usr/share/wordnet")
    ap.add_argument("--out", default=os.path.join(here, "sample.jsonl"))
    args = ap.parse_args()

    wn = args.wordnet_dir
    if not os.path.exists(os.path.join(wn, "data.noun")):
        sys.exit(f"no WordNet data in {wn}; apt-get install wordnet-base (see docstring)")

    synsets = {}
    for pos, name in POS_FILES.items():
        for ss in parse_data_file(os.path.join(wn, f"data.{name}")):
            synsets[(ss["ss_type"] if ss["ss_type"] != "s" else "a", ss["offset"])] = ss
    # Sanity check that this is WordNet 3.0 (ids are 3.0 byte offsets).
    lion = synsets.get(("n", "02129165"))
    if not lion or lion["words"][0][0] != "lion":
        sys.exit("this does not look like WordNet 3.0 (synset n/02129165 is not 'lion')")

    # Sense key -> tag count from SemCor (cntlist.rev: "sense_key sense_number tag_cnt").
    tag_count = {}
    with open(os.path.join(wn, "cntlist.rev"), encoding="utf-8") as f:
        for line in f:
            key, _sense, cnt = line.split()
            tag_count[key] = tag_count.get(key, 0) + int(cnt)

    records = []
    for (pos, offset), ss in synsets.items():
        # Head word for adjective satellites (needed to build sense keys).
        head = ""
        if ss["ss_type"] == "s":
            for sym, tgt, tpos, _ in ss["pointers"]:
                if sym == "&":
                    hw, hid = synsets[("a", tgt)]["words"][0]
                    head = f"{lemma_of(hw).lower()}:{hid:02d}"
                    break
        count = 0
        for word, lex_id in ss["words"]:
            key = (f"{lemma_of(word).lower()}%{SS_TYPE_NUM[ss['ss_type']]}:"
                   f"{ss['lex_filenum']:02d}:{lex_id:02d}:{head}" + ("" if head else ":"))
            count += tag_count.get(key, 0)
        if count == 0:
            continue
        if any(sym == ";u" and tgt in EXCLUDED_USAGE for sym, tgt, _, _ in ss["pointers"]):
            continue
        gloss = clean(ss["gloss"])
        if EXCLUDED_GLOSS.search(gloss):
            continue
        words = []
        for w, _ in ss["words"]:
            w = clean(lemma_of(w).replace("_", " "))
            if w not in words and w.lower() not in CRUDE_SYNONYMS:
                words.append(w)
        if any(EXCLUDED_GLOSS.search(w) for w in words):
            continue
        text = f"{', '.join(words[:MAX_WORDS_SHOWN])}: {gloss}"
        n_words = len(gloss.split())
        if not (MIN_WORDS <= n_words <= MAX_WORDS):
            continue
        lexname = LEXNAMES[ss["lex_filenum"]]
        category = CATEGORY_RENAME.get(lexname, lexname.split(".", 1)[1])
        records.append({
            "count": count,
            "id": f"wn30-{pos}-{offset}",
            "text": text,
            "metadata": {
                "pos": POS_NAMES[ss["ss_type"]],
                "category": category,
                "word": words[0],
            },
            "_lexname": lexname,
        })

    # Keep the most frequent senses per category; ties broken by id.
    records.sort(key=lambda r: (-r["count"], r["id"]))
    per_cat, seen_text, out = {}, set(), []
    for r in records:
        if per_cat.get(r["_lexname"], 0) >= MAX_PER_CATEGORY[r["_lexname"].split(".")[0]]:
            continue
        if r["text"] in seen_text:
            continue
        seen_text.add(r["text"])
        per_cat[r["_lexname"]] = per_cat.get(r["_lexname"], 0) + 1
        out.append(r)
    out.sort(key=lambda r: r["id"])

    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for r in out:
            f.write(json.dumps({"id": r["id"], "text": r["text"], "metadata": r["metadata"]},
                               ensure_ascii=False, sort_keys=False) + "\n")
    print(f"wrote {len(out)} records to {args.out}", file=sys.stderr)
    for name in sorted(per_cat):
        print(f"  {name:22s} {per_cat[name]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
