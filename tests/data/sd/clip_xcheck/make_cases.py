# Reference cases for tests/test_clip_tok.c (test_xcheck): transformers' CLIPTokenizer
# algorithm without ftfy (tokenization_clip.py + BasicTokenizer(strip_accents=False,
# do_split_on_punc=False)), transcribed to Python with the `regex` module and unicodedata, on
# random strings over ASCII, whitespace/control characters, accented / Greek / Cyrillic / CJK
# letters, non-ASCII digits, emoji, special tokens, and a vocabulary of the 512 byte symbols
# plus 300 merges trained greedily on similar strings.
# Run: python3 make_cases.py 1  (writes tok/vocab.json, tok/merges.txt, cases.txt: hex text TAB ids)
# Reference: transformers CLIPTokenizer (no ftfy) algorithm, transcribed for a cross-check.
import regex as re, unicodedata, json, random, sys, os
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~")+1))+list(range(ord("¡"), ord("¬")+1))+list(range(ord("®"), ord("ÿ")+1))
    cs = bs[:]; n = 0
    for b in range(256):
        if b not in bs: bs.append(b); cs.append(256+n); n += 1
    return dict(zip(bs, [chr(c) for c in cs]))
BE = bytes_to_unicode()
def is_ws(c):
    if c in " \t\n\r": return True
    return unicodedata.category(c) == "Zs"
def is_ctrl(c):
    if c in "\t\n\r": return False
    return unicodedata.category(c) in ("Cc", "Cf")
def is_cjk(cp):
    return (0x4E00<=cp<=0x9FFF) or (0x3400<=cp<=0x4DBF) or (0x20000<=cp<=0x2A6DF) or (0x2A700<=cp<=0x2B73F) or (0x2B740<=cp<=0x2B81F) or (0x2B820<=cp<=0x2CEAF) or (0xF900<=cp<=0xFAFF) or (0x2F800<=cp<=0x2FA1F)
def basic(text):
    out=[]
    for c in text:
        cp=ord(c)
        if cp==0 or cp==0xFFFD or is_ctrl(c): continue
        out.append(" " if is_ws(c) else c)
    text="".join(out)
    out=[]
    for c in text:
        if is_cjk(ord(c)): out += [" ", c, " "]
        else: out.append(c)
    text="".join(out)
    text=unicodedata.normalize("NFC", text)
    toks=text.strip().split()
    return " ".join(t.lower() for t in toks)
pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", re.IGNORECASE)
def get_pairs(w): return set(zip(w[:-1], w[1:]))
def make(vocab, merges):
    ranks = dict(zip(merges, range(len(merges))))
    cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
    def bpe(token):
        if token in cache: return cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = get_pairs(word)
        if not pairs: return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if bigram not in ranks: break
            first, second = bigram; nw = []; i = 0
            while i < len(word):
                try: j = word.index(first, i)
                except ValueError: nw.extend(word[i:]); break
                else: nw.extend(word[i:j]); i = j
                if word[i] == first and i < len(word)-1 and word[i+1] == second: nw.append(first+second); i += 2
                else: nw.append(word[i]); i += 1
            word = tuple(nw)
            if len(word) == 1: break
            pairs = get_pairs(word)
        return " ".join(word)
    unk = vocab["<|endoftext|>"]
    def encode(text):
        ids=[]
        # added tokens split first
        for part in re.split(r"(<\|startoftext\|>|<\|endoftext\|>)", text):
            if part in ("<|startoftext|>", "<|endoftext|>"): ids.append(vocab[part]); continue
            t = basic(part)
            for tok in re.findall(pat, t):
                tok = "".join(BE[b] for b in tok.encode("utf-8"))
                ids += [vocab.get(x, unk) for x in bpe(tok).split(" ")]
        return ids
    return encode
import random, json, sys


random.seed(int(sys.argv[1]) if len(sys.argv)>1 else 1)
pool = list("abcdefghijklmnopqrstuvwxyz")*4 + list("ABCDEFGHIJ") + list("0123456789") + list(" "*8) + list("\t\n\r\x0c\x0b\x85") + list(".,!?;:'\"()[]-_/&%$#@") + ["'s","'t","'re","'ll","'d","'m","'ve"] + ["é","É","è","ß","ñ","Ω","ж","中","文","日本","\u2028","\u00a0","\u3000","😀","🎨","\u200b","\x01","<|endoftext|>","<|startoftext|>","١","²","½","ǅ","İ"]
def rnd(): return "".join(random.choice(pool) for _ in range(random.randint(0,40)))
# vocab: all byte chars bare and with </w>, then merges trained greedily on sample text
corpus=[rnd() for _ in range(3000)]
vocab={}
for c in BE.values(): vocab[c]=len(vocab)
for c in BE.values(): vocab[c+"</w>"]=len(vocab)
words={}
for t in corpus:
    for tok in re.findall(pat, basic(t)):
        tok="".join(BE[b] for b in tok.encode())
        w=tuple(tok[:-1])+(tok[-1]+"</w>",)
        words[w]=words.get(w,0)+1
merges=[]
for _ in range(300):
    cnt={}
    for w,f in words.items():
        for p in zip(w[:-1],w[1:]): cnt[p]=cnt.get(p,0)+f
    if not cnt: break
    best=max(cnt,key=lambda p:(cnt[p],p))
    merges.append(best); vocab.setdefault(best[0]+best[1], len(vocab))
    nw={}
    for w,f in words.items():
        o=[];i=0
        while i<len(w):
            if i<len(w)-1 and (w[i],w[i+1])==best: o.append(w[i]+w[i+1]); i+=2
            else: o.append(w[i]); i+=1
        nw[tuple(o)]=nw.get(tuple(o),0)+f
    words=nw
vocab["<|startoftext|>"]=len(vocab); vocab["<|endoftext|>"]=len(vocab)
os.makedirs("tok",exist_ok=True)
json.dump(vocab,open("tok/vocab.json","w"),ensure_ascii=False)
open("tok/merges.txt","w").write("#version: 0.2\n"+"\n".join(a+" "+b for a,b in merges)+"\n")
enc=make(vocab,merges)
tests=[rnd() for _ in range(400)]
with open("cases.txt","w") as f:
    for t in tests:
        f.write(t.encode("utf-8").hex()+"\t"+" ".join(map(str,enc(t)))+"\n")
print(len(vocab),len(merges))
