import { describe, expect, it } from "vitest";
import { tinyVocab } from "../../worker/src/models/tiny.ts";
import { BOS, ClipTokenizer, EOS } from "../../worker/src/pipeline/tokenizer.ts";
import { tinyModel } from "./support.ts";

describe("CLIP tokenizer", () => {
  const { vocab, merges } = tinyVocab();
  const tok = new ClipTokenizer({ vocab, merges });
  const id = (t: string) => vocab[t] as number;

  it("applies the BPE merges by rank and marks word ends", () => {
    expect(tok.encode("cat")).toEqual([id("cat</w>")]);
    expect(tok.encode("A photo of a CAT")).toEqual([
      id("a</w>"),
      id("photo</w>"),
      id("of</w>"),
      id("a</w>"),
      id("cat</w>"),
    ]);
    // A word without merges falls back to byte tokens, the last one with </w>.
    expect(tok.encode("xyz")).toEqual([id("x"), id("y"), id("z</w>")]);
    // Prefixes of known words merge as far as the merges go.
    expect(tok.encode("cats")).toEqual([id("ca"), id("t"), id("s</w>")]);
  });

  it("splits punctuation and digits like CLIP and lowercases, cleans whitespace and entities", () => {
    expect(tok.encode("  red,\n\tdog!! 42 &amp;")).toEqual([
      id("red</w>"),
      id(",</w>"),
      id("dog</w>"),
      id("!"),
      id("!</w>"),
      id("4</w>"),
      id("2</w>"),
      id("&</w>"),
    ]);
  });

  it("encodes non-ASCII text through the byte map and decodes it back", () => {
    const ids = tok.encode("café ☕");
    expect(tok.decode(ids)).toBe("café ☕");
  });

  it("pads with the pad token to 77 and truncates long prompts keeping BOS and EOS", () => {
    const ids = tok.tokenize("a cat");
    expect(ids).toHaveLength(77);
    expect(ids.slice(0, 4)).toEqual([id(BOS), id("a</w>"), id("cat</w>"), id(EOS)]);
    expect(ids[76]).toBe(id(EOS));
    const long = tok.tokenize("cat ".repeat(200));
    expect(long).toHaveLength(77);
    expect(long[0]).toBe(id(BOS));
    expect(long[75]).toBe(id("cat</w>"));
    expect(long[76]).toBe(id(EOS));
  });

  it("reads vocab.json, merges.txt and the pad token from a tokenizer folder", () => {
    const fromDir = ClipTokenizer.fromDir(`${tinyModel()}/tokenizer`);
    expect(fromDir.tokenize("a photo of a dog")).toEqual(tok.tokenize("a photo of a dog"));
    const sd2 = new ClipTokenizer({ vocab, merges, padToken: "!" });
    expect(sd2.tokenize("cat")[3]).toBe(id("!"));
  });
});
