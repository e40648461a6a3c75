#!/usr/bin/python3
# Produces the golden files for lib/text (tests/test_tokenizer.c, tests/test_caption.c):
#   testdata/text/tokenizer_golden.txt        single texts -> ids ([CLS] x1..xn, ALBEF's rule)
#   testdata/text/tokenizer_batch_golden.txt  batches -> padded ids and attention masks
#   testdata/text/caption_golden.txt          pre_caption / pre_question outputs
#
# Reference: Hugging Face's slow BertTokenizer (transformers 4.x, do_lower_case=True) on
# ../shared/data/bert-base-uncased-vocab.txt, subclassed as ALBEF's models/tokenization_bert.py
# does (a single sequence gets no trailing [SEP]); pre_caption / pre_question are ALBEF's
# dataset/utils.py functions, re-typed below.
#
# Run from the repository root (transformers 5.x changed the tokenizer back ends, so use 4.x):
#   python3 -m pip install --target /tmp/tf4 --no-deps 'transformers>=4.40,<5' \
#       'tokenizers>=0.22,<=0.23.0' 'huggingface_hub>=0.34,<1.0'
#   PYTHONPATH=/tmp/tf4 /usr/bin/python3 scripts/dev/make_text_goldens.py
#
# Python 3.11's unicodedata is Unicode 14.0 and the C code's utf8proc is 15.0: characters
# assigned in 15.0 are left out of the generated texts (found through libutf8proc with ctypes).
#
# File format: one record per line, fields separated by tabs. Texts are UTF-8 with '\' written
# '\\' and the bytes 0x00-0x1F, 0x7F (and every byte >= 0x80 of a text that is not valid UTF-8)
# written '\xHH'.

import ctypes
import json
import os
import random
import re
import sys
import unicodedata

import transformers
from transformers import BertTokenizer

VOCAB = os.path.join(os.environ.get("ALBEF_SHARED_DATA", "../shared/data"), "bert-base-uncased-vocab.txt")
CAPTIONS = os.path.join(os.environ.get("ALBEF_SHARED_DATA", "../shared/data"), "real-images", "captions.json")
OUT = "testdata/text"

assert transformers.__version__.startswith("4."), "needs transformers 4.x, found " + transformers.__version__


class AlbefBertTokenizer(BertTokenizer):
    """ALBEF's change: a single sequence is [CLS] x, with no trailing [SEP]."""

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        if token_ids_1 is None:
            return [self.cls_token_id] + token_ids_0
        return [self.cls_token_id] + token_ids_0 + [self.sep_token_id] + token_ids_1 + [self.sep_token_id]


# ---- ALBEF dataset/utils.py ------------------------------------------------------------

def pre_question(question, max_ques_words):
    question = re.sub(r"([,.'!?\"()*#:;~])", '', question.lower()).replace('-', ' ').replace('/', ' ')
    question = question.rstrip(' ')
    question_words = question.split(' ')
    if len(question_words) > max_ques_words:
        question = ' '.join(question_words[:max_ques_words])
    return question


def pre_caption(caption, max_words):
    caption = re.sub(r"([,.'!?\"()*#:;~])", '', caption.lower()).replace('-', ' ').replace('/', ' ') \
        .replace('<person>', 'person')
    caption = re.sub(r"\s{2,}", ' ', caption)
    caption = caption.rstrip('\n')
    caption = caption.strip(' ')
    caption_words = caption.split(' ')
    if len(caption_words) > max_words:
        caption = ' '.join(caption_words[:max_words])
    return caption


# ---- characters both Unicode versions agree on ------------------------------------------

_utf8proc = ctypes.CDLL("libutf8proc.so.2")
_utf8proc.utf8proc_category.restype = ctypes.c_int
_utf8proc.utf8proc_category_string.restype = ctypes.c_char_p


def same_in_both(ch):
    return _utf8proc.utf8proc_category_string(ord(ch)).decode() == unicodedata.category(ch)


def clean(s):
    return "".join(c for c in s if same_in_both(c))


# ---- text generators ----------------------------------------------------------------------

rng = random.Random(20240611)

SUBJECTS = ["a man", "a woman", "two dogs", "the cat", "a young boy", "an old lady", "three people", "a brown horse",
            "a group of children", "the chef", "a skateboarder", "a surfer", "an elephant", "a giraffe", "a bird",
            "two zebras", "a police officer", "a baseball player", "the bus", "a red truck", "a little girl",
            "a teddy bear", "a pizza", "a plate of food", "a laptop", "a motorcycle", "a kite", "the train"]
VERBS = ["is standing", "is sitting", "is riding", "is holding", "is eating", "is walking", "are playing",
         "is looking at", "is jumping over", "is parked", "is flying", "is lying", "sits", "stands", "runs",
         "is covered with", "is next to", "is in front of"]
OBJECTS = ["a frisbee", "a surfboard", "the ball", "an umbrella", "a sandwich", "a cell phone", "a skateboard",
           "a bench", "the water", "the snow", "a fence", "a tree", "a building", "the street", "a table",
           "some broccoli", "a hot dog", "a bicycle", "a clock tower", "a fire hydrant", "a stop sign"]
PLACES = ["on the beach", "in a park", "on a city street", "in the kitchen", "at the airport", "in a field",
          "near the ocean", "on a snowy hill", "in the living room", "under a blue sky", "at night",
          "in front of a store", "on a wooden table", "by the river", "in a zoo enclosure"]
ADJ = ["large", "small", "bright", "dark", "colorful", "crowded", "empty", "busy", "sunny", "cloudy", "old",
       "modern", "tall", "tiny", "beautiful", "dirty", "clean", "wet", "grassy", "rocky"]
QUESTIONS = ["what color is the {o}?", "how many {s} are there?", "is the {s} {v}?", "where is the {o}?",
             "what is {s} doing?", "is there a {o} in the picture?", "what sport is being played?",
             "who is holding the {o}?", "why is the {s} {v}?", "which side is the {o} on?",
             "does the {o} look new?", "what is on the {o}?", "are these {s} real?"]


def template_caption():
    s, v, o, p = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(PLACES)
    forms = [
        f"{s} {v} {o} {p}",
        f"{s.capitalize()} {v} {o} {p}.",
        f"A {rng.choice(ADJ)} view of {s} {v} {o}",
        f"{s} {v} {o}, {p}!",
        f"{s.upper()} {v} {o}",
        f"{s} with {rng.randint(2, 99)} {rng.choice(['balloons', 'apples', 'cars', 'people'])} {p}",
        f"\"{s} {v} {o}\" - {p}",
        f"{s} ({rng.choice(ADJ)}) {v} {o}; {p}...",
        f"{s}'s {rng.choice(['dog', 'car', 'hat', 'phone'])} {v} {o}",
        f"{s} {v} {o} {p} and {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}",
        f"{s}/{rng.choice(SUBJECTS)} {v}-{rng.choice(ADJ)} {o}",
        f"  {s}   {v}\t{o}\n{p}  ",
    ]
    return rng.choice(forms)


def template_question():
    q = rng.choice(QUESTIONS).format(s=rng.choice(SUBJECTS).split(" ", 1)[-1], v=rng.choice(VERBS).split(" ")[-1],
                                     o=rng.choice(OBJECTS).split(" ", 1)[-1])
    if rng.random() < 0.3:
        q = q.capitalize()
    return q


ACCENTED = ["café", "naïve", "résumé", "jalapeño", "über", "Ångström", "façade", "smørrebrød", "straße", "Æsir",
            "cœur", "Łódź", "İstanbul", "ıspanak", "Ğ", "Şişli", "crème brûlée", "São Paulo", "Zürich", "Dvořák",
            "Kraków", "piñata", "Mötley Crüe", "fiancée", "Øresund", "Việt Nam", "Phở bò", "Curaçao", "Ærø",
            "e\u0301le\u0300ve", "A\u030angstro\u0308m", "n\u0303", "o\u0308\u0304", "ǅemal", "ǈubljana",
            "Ⅻ Roman", "ⅰⅱⅲ", "Ⓐⓑⓒ", "ﬁne ﬂour", "ℌello", "K\u212a kelvin", "Ω\u2126 ohm", "Å\u212b angstrom"]
GREEK = ["ΟΔΟΣ", "Σίσυφος", "ΣΟΦΟΣ ΑΝΘΡΩΠΟΣ", "Σ", "ΑΣ", "ΑΣ.", "ΑΣ'Β", "Α'Σ", "ΑΣ\u0301", "ΑΣ\u0301Β",
         "Ἀθῆναι", "ᾈ ᾼ", "καλημέρα κόσμε", "Ελληνικά", "ΣΣΣ", "ΑΣ1", "1Σ", "ΑΣ ", "ΑΣⅰ", "ΑΣⒶ", "ªΣ", "ºΣ",
         "ΑΣ\u200d", "ΑΣ\u00ad", "ΑΣ\u02b0", "ΑΣ\u00b7Β", "ΑΣ:Β", "ΑΣ-Β", "ΑΣ\u2019Β"]
OTHER_SCRIPTS = ["Привет мир", "ЁЛКА", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "क़िला", "ภาษาไทย",
                 "ქართული", "Հայերեն", "ᚠᚢᚦ", "ꦗꦮ꧀ꦲꦶ", "ᬩᬮᬶ᭄", "ꯃꯤꯇꯩ", "తెలుగు", "தமிழ்", "ລາວ", "ខ្មែរ",
                 "𐌰𐌱𐌲", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝐁𝐨𝐥𝐝", "①②③", "½ ¾ ⅞", "x² + y³", "H₂O", "١٢٣ ٤٥٦", "३४५"]
CJK = ["我爱北京天安门", "今天天气很好。", "漢字と仮名", "中文English混合", "𠀀𠀁𪚥", "豈更車", "\uf900\ufa6d\ufad9",
       "\U0002f800\U0002fa1d", "一个人在海边散步", "㐀㐁", "ひらがな カタカナ", "ｶﾀｶﾅ ﾊﾟﾝ", "がぎぐ", "が\u3099",
       "パーティー", "東京タワー", "한국어 문장입니다", "안녕하세요", "각", "ㄱㄴㄷ", "서울에서 부산까지", "〇〆々",
       "「こんにちは」", "【注意】", "中、日。韩！", "１２３ＡＢＣ"]
EMOJI = ["🙂", "a 😀 b", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇯🇵🇫🇷", "1️⃣", "❤️", "☕ coffee",
         "dog🐶cat🐱", "🧑🏿\u200d🚀 astronaut", "✌🏻✌🏼✌🏽✌🏾✌🏿", "🤷\u200d♀️", "😂😂😂", "♥♦♣♠", "★☆", "©®™"]
PUNCT = ["!!!", "???", "...", "?!?!", "—", "– –", "“quoted”", "«guillemets»", "¿qué?", "¡hola!", "‽", "、。",
         "a.b.c", "(a)[b]{c}", "<tag>", "#hashtag", "@user", "$100", "50%", "a&b", "x*y", "a_b", "a~b", "`code`",
         "^caret", "a|b", "a\\b", "'single'", "\"double\"", "...and...", "--dash--", "a/b/c", "¶§", "†‡", "•◦",
         "‹›", "′″", "‐‑‒", "⁂", "﹏", "＿", "﹖", "｡", "a…b", "·", "¨", "´", "¯", "˜"]
CONTROL = ["a\x00b", "a\x01b\x02c", "tab\tsep", "line\nbreak", "cr\rlf", "\x0bvt\x0cff", "a\x1cb\x1dc\x1ed\x1fe",
           "del\x7fete", "nel\x85x", "zero\u200bwidth", "zw\u200cnj", "zw\u200dj", "bom\ufeffx", "ls\u2028ps\u2029x",
           "nb\u00a0sp", "ideo\u3000space", "em\u2003space", "soft\u00adhyphen", "rlm\u200fx", "lrm\u200ex",
           "fffd\ufffdx", "pua\ue000x", "pua\U000f0000x", "unassigned\u0378x", "\u2060word\u2060joiner",
           "\u180emongolian", "bidi\u202etext\u202c", "interlinear\ufff9a\ufffab\ufffb", "tag\U000e0041x",
           "ogham\u1680space", "narrow\u202fnb", "math\u205fspace", "\u0085start", "end\u2028"]
URLS = ["https://www.example.com/path?q=1&r=2#frag", "http://coco.org/images/123.jpg", "user@example.com",
        "ftp://files.example.org/a_b-c.txt", "www.Test-Site.co.uk", "C:\\Users\\me\\pic.png", "/usr/local/bin",
        "v1.2.3-rc4", "3.14159", "1,000,000", "12:30pm", "2021-07-16", "+1 (555) 123-4567", "#1 fan", "A4 paper",
        "COVID-19", "iPhone12Pro", "mp3/mp4", "x86_64", "100km/h", "9/11", "24/7", "e=mc^2", "f(x)=2x+1"]
SPECIALS = ["yes[SEP]", "no [SEP]", "[CLS] a photo", "a[MASK]b", "[MASK]", "[MASK][MASK]", "[PAD]", "[UNK]",
            "two [SEP] dogs [SEP]", "[sep]", "[Sep]", "[SEP", "SEP]", "[[SEP]]", "[ SEP ]", "x[PAD]y[UNK]z",
            "[SEP][CLS][MASK][PAD][UNK]", "Yes[SEP]", "YES [SEP]", "[MASK]ed", "un[MASK]able", "[MASKED]",
            "[SEPARATOR]", "[CLS]\t[SEP]\n", "é[SEP]é", "中[SEP]文", "[SEP]😀", "[\u0301SEP]", "[SEP]\u0301",
            "[ＳＥＰ]", "［SEP］", "a [SEP] b [SEP] c [SEP] d [SEP] e [SEP] f [SEP] g", "tennis racket[SEP]",
            "[MASK] is [MASK] [SEP]", "[SEP]" * 30]
REORDER = ["x\U0001d16d\U0001d165y", "a\u302e\u1b44b", "a\u1b44\u302eb", "a\u0301\U0001d16d\u0300\U0001d165b",
           "\U0001d16d\u302e\u1b44", "q\u0f71\u0f72\u0f74", "ᄀ\u302e\u1b44"]


def long_word(n, alphabet="abcdefghijklmnopqrstuvwxyz"):
    return "".join(rng.choice(alphabet) for _ in range(n))


def long_words():
    out = ["a" * 100, "a" * 101, "b" * 99, "x" * 250, "é" * 100, "é" * 101, "e\u0301" * 101,
           "ab" * 50 + "." + "cd" * 60, "1234567890" * 12, "中" * 120, "word " + "z" * 150 + " end",
           "pre" + "\u200b" * 200 + "fix", "a" * 100 + "\u0301" * 50, "A" * 101, "İ" * 100, "İ" * 101]
    for n in (98, 99, 100, 101, 102, 150, 300):
        out.append(long_word(n))
    out.append("supercalifragilisticexpialidocious " * 4)
    out.append("antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis")
    return out


def assigned_chars():
    """Code points whose properties agree in both Unicode versions, minus surrogates."""
    chars = []
    for cp in list(range(0x20, 0x3400)) + list(range(0xA000, 0xD800)) + list(range(0xF900, 0x10000)) + \
            list(range(0x10000, 0x1FB00)) + list(range(0x20000, 0x20100)) + list(range(0x2F800, 0x2F900)) + \
            list(range(0xE0000, 0xE0080)):
        c = chr(cp)
        if same_in_both(c):
            chars.append(c)
    return chars


ASSIGNED = assigned_chars()
ASCII_PRINT = [chr(c) for c in range(0x20, 0x7F)]
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u2028", "\x1c", "\x85", " \n "]


def random_unicode_text():
    n = rng.randint(1, 24)
    parts = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            parts.append(rng.choice(ASSIGNED))
        elif r < 0.75:
            parts.append(rng.choice(ASCII_PRINT))
        elif r < 0.9:
            parts.append(rng.choice(WHITESPACE))
        else:
            parts.append(rng.choice(ACCENTED + GREEK + CJK + EMOJI + PUNCT))
    return "".join(parts)


def random_ascii_text():
    n = rng.randint(0, 60)
    pool = ASCII_PRINT * 3 + list("\t\n\r") + [chr(c) for c in range(0, 0x20)]
    return "".join(rng.choice(pool) for _ in range(n))


def random_invalid_bytes():
    base = rng.choice(["caption with bytes", "a dog", "naïve", "中文", "yes[SEP]", "", "ok"]).encode()
    bad = [b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f",
           b"\xf0\x9f\x98", b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xe0\x80\x80", b"\xc2", b"\xef\xbf\xbd", b"\xa0\xa1"]
    out = bytearray(base)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(out))
        out[pos:pos] = rng.choice(bad)
    return bytes(out)


def all_texts():
    texts = []
    with open(CAPTIONS, encoding="utf-8") as f:
        for item in json.load(f):
            for c in item["caption"]:
                texts += [c, c.upper(), c.title(), c + ".", pre_caption(c, 30)]
    texts += ["", " ", "   ", "\t\n", "\n", "\u3000\u00a0", "\u200b", "\x00", "\ufffd", "[SEP]", ".", "a"]
    texts += ACCENTED + GREEK + OTHER_SCRIPTS + CJK + EMOJI + PUNCT + CONTROL + URLS + SPECIALS + REORDER
    texts += long_words()
    texts += [template_caption() for _ in range(700)]
    texts += [template_question() for _ in range(200)]
    texts += [random_unicode_text() for _ in range(450)]
    texts += [random_ascii_text() for _ in range(150)]
    for _ in range(150):  # mixtures of the curated lists
        k = rng.randint(2, 5)
        pool = ACCENTED + GREEK + OTHER_SCRIPTS + CJK + EMOJI + PUNCT + CONTROL + URLS + SPECIALS + SUBJECTS
        texts.append(rng.choice([" ", "", "\t", "-", "/"]).join(rng.choice(pool) for _ in range(k)))
    texts = [clean(t) for t in texts]
    texts += [random_invalid_bytes() for _ in range(80)]
    return texts


# ---- output -----------------------------------------------------------------------------

def escape(b):
    """bytes -> one line of the golden format."""
    try:
        b.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    out = bytearray()
    for x in b:
        if x == 0x5C:
            out += b"\\\\"
        elif x < 0x20 or x == 0x7F or (x >= 0x80 and not valid):
            out += b"\\x%02x" % x
        else:
            out.append(x)
    return bytes(out)


def as_bytes(t):
    return t if isinstance(t, bytes) else t.encode("utf-8")


def as_str(t):
    return t.decode("utf-8", errors="replace") if isinstance(t, bytes) else t


def ints(xs):
    return " ".join(str(x) for x in xs).encode()


def write_tokenizer_goldens(tok, texts):
    lines = []
    for t in texts:
        s = as_str(t)
        lines.append(b"0\t" + escape(as_bytes(t)) + b"\t" + ints(tok(s)["input_ids"]))
    # Truncation as ALBEF calls it (max_length 25 and 30), and the edge lengths.
    for t in rng.sample(texts, 500):
        s = as_str(t)
        for k in (25, 30):
            lines.append(b"%d\t" % k + escape(as_bytes(t)) + b"\t" +
                         ints(tok(s, truncation=True, max_length=k)["input_ids"]))
    # max_length=1 is left out: there HF's slow tokenizer logs an error and does not truncate.
    for t in rng.sample(texts, 60):
        for k in (2, 3):
            lines.append(b"%d\t" % k + escape(as_bytes(t)) + b"\t" +
                         ints(tok(as_str(t), truncation=True, max_length=k)["input_ids"]))
    with open(os.path.join(OUT, "tokenizer_golden.txt"), "wb") as f:
        f.write(b"# max_length (0: no truncation) <TAB> text <TAB> ids, from make_text_goldens.py\n")
        f.write(b"\n".join(lines) + b"\n")
    return len(lines)


def write_batch_goldens(tok, texts):
    blocks = []
    modes = [("longest", False, 0), ("longest", True, 25), ("max_length", True, 30), ("longest", False, 30),
             ("max_length", True, 8), ("longest", True, 3), ("max_length", False, 40)]
    for i in range(48):
        padding, truncation, k = modes[i % len(modes)]
        batch = rng.sample(texts, rng.randint(1, 7))
        strs = [as_str(t) for t in batch]
        kwargs = {"padding": padding}
        if truncation:
            kwargs.update(truncation=True, max_length=k)
        elif k:
            kwargs.update(max_length=k)  # padding set, no truncation flag: no truncation (ALBEF retrieval train)
        enc = tok(strs, **kwargs)
        lines = [b"batch\t%s\t%d\t%d\t%d" % (padding.encode(), int(truncation), k, len(batch))]
        lines += [b"text\t" + escape(as_bytes(t)) for t in batch]
        lines += [b"ids\t" + ints(r) for r in enc["input_ids"]]
        lines += [b"mask\t" + ints(r) for r in enc["attention_mask"]]
        blocks.append(b"\n".join(lines))
    with open(os.path.join(OUT, "tokenizer_batch_golden.txt"), "wb") as f:
        f.write(b"# batch <TAB> padding <TAB> truncation <TAB> max_length <TAB> size, then size lines each of\n"
                b"# text, ids and mask; from make_text_goldens.py\n")
        f.write(b"\n".join(blocks) + b"\n")
    return len(blocks)


def caption_texts():
    texts = []
    with open(CAPTIONS, encoding="utf-8") as f:
        for item in json.load(f):
            texts += item["caption"]
    texts += [template_caption() for _ in range(150)]
    texts += [template_question() for _ in range(60)]
    texts += ["", " ", "  ", "\n", "\n\n", " \n", "a\n", "a \n", "a\n ", "\na", " a", "a ", "  a  b  ",
              "a\tb", "a\t\tb", "a \tb", "a\u00a0b", "a\u00a0\u00a0b", "a\u3000 b", "a\u2028\u2029b", "a\x1c\x1db",
              "a\u200b\u200bb", "a\x85\x85b", "end\n\n", "end \n", "end\r\n", "a - b", "a-b", "a/b", "a -- b",
              "<person>", "<PERSON> is here", "<per-son>", "<person>.", "<per.son>", "<<person>>", "<person",
              "a <person> and <person>", "A. B. C.", "what's this?", "\"quoted\" (text) *star* #tag :colon; ~tilde",
              "!!!", "-", "/", "- -", "a-", "-a", "İstanbul", "İ", "KELVIN \u212a", "ẞ", "ǅ", "Ⅻ", "Ⓐ", "ﬁ"]
    texts += GREEK + ACCENTED + CJK[:8] + EMOJI[:8] + CONTROL + PUNCT + SPECIALS[:10]
    for _ in range(60):  # capital sigma between random neighbours
        pick = lambda: rng.choice(["", "Α", "α", "1", " ", "'", ".", "\u0301", "\u02b0", "\u00ad", "Ⅰ", "Ⓑ", "ª",
                                   "\u200d", "-", "Σ", "ς", "ǅ", "^", "`", ":", rng.choice(ASSIGNED)])
        texts.append(pick() + pick() + "Σ" + pick() + pick())
    for _ in range(40):  # long captions for the word limit
        texts.append(" ".join(template_caption() for _ in range(rng.randint(2, 6))))
    texts += [random_unicode_text() for _ in range(60)]
    texts = [clean(t) for t in texts]
    texts += [random_invalid_bytes() for _ in range(25)]
    return texts


def write_caption_goldens(texts):
    lines = []
    for t in texts:
        s = as_str(t)
        for fn, name, limits in ((pre_caption, b"caption", (30, 5, 1, 0)), (pre_question, b"question", (30, 50, 2))):
            for mw in limits:
                if mw != limits[0] and rng.random() < 0.5:
                    continue
                out = fn(s, mw).encode("utf-8")
                lines.append(name + b"\t%d\t" % mw + escape(as_bytes(t)) + b"\t" + escape(out))
    with open(os.path.join(OUT, "caption_golden.txt"), "wb") as f:
        f.write(b"# caption|question <TAB> max_words <TAB> input <TAB> output, from make_text_goldens.py\n")
        f.write(b"\n".join(lines) + b"\n")
    return len(lines)


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = AlbefBertTokenizer(VOCAB, do_lower_case=True)
    texts = all_texts()
    n1 = write_tokenizer_goldens(tok, texts)
    n2 = write_batch_goldens(tok, texts)
    n3 = write_caption_goldens(caption_texts())
    print(f"{len(texts)} texts: {n1} tokenizer lines, {n2} batches, {n3} caption lines "
          f"(transformers {transformers.__version__}, Unicode {unicodedata.unidata_version})", file=sys.stderr)


if __name__ == "__main__":
    main()
