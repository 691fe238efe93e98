/**
 * The CLIP BPE tokenizer (as in transformers' CLIPTokenizer), read from a diffusers `tokenizer/` folder:
 * vocab.json + merges.txt, and optionally special_tokens_map.json / tokenizer_config.json for the pad
 * token (SD 1.5 pads with <|endoftext|>, SD 2 with "!").
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const BOS = "<|startoftext|>";
export const EOS = "<|endoftext|>";

const PATTERN =
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

/** GPT-2's reversible byte → printable unicode character map. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = "!".charCodeAt(0); b <= "~".charCodeAt(0); b++) bs.push(b);
  for (let b = "¡".charCodeAt(0); b <= "¬".charCodeAt(0); b++) bs.push(b);
  for (let b = "®".charCodeAt(0); b <= "ÿ".charCodeAt(0); b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const table = new Array<string>(256);
  bs.forEach((b, i) => {
    table[b] = String.fromCharCode(cs[i] as number);
  });
  return table;
}

function decodeEntities(text: string): string {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

export interface TokenizerFiles {
  vocab: Record<string, number>;
  merges: string[];
  padToken?: string;
  maxLength?: number;
}

export class ClipTokenizer {
  readonly maxLength: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  private readonly encoder: Map<string, number>;
  private readonly ranks = new Map<string, number>();
  private readonly byteEncoder = bytesToUnicode();
  private readonly cache = new Map<string, string[]>();

  constructor(files: TokenizerFiles) {
    this.encoder = new Map(Object.entries(files.vocab));
    files.merges.forEach((line, rank) => {
      this.ranks.set(line, rank);
    });
    this.maxLength = files.maxLength ?? 77;
    const id = (token: string) => {
      const value = this.encoder.get(token);
      if (value === undefined) throw new Error(`tokenizer vocab has no ${token}`);
      return value;
    };
    this.bosId = id(BOS);
    this.eosId = id(EOS);
    this.padId = id(files.padToken ?? EOS);
    this.cache.set(BOS, [BOS]);
    this.cache.set(EOS, [EOS]);
  }

  static fromDir(dir: string): ClipTokenizer {
    const vocab = JSON.parse(readFileSync(join(dir, "vocab.json"), "utf8")) as Record<string, number>;
    const merges = readFileSync(join(dir, "merges.txt"), "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "" && !line.startsWith("#version"));
    let padToken: string | undefined;
    let maxLength: number | undefined;
    for (const file of ["special_tokens_map.json", "tokenizer_config.json"]) {
      const path = join(dir, file);
      if (!existsSync(path)) continue;
      const json = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
      const pad = json.pad_token;
      if (typeof pad === "string") padToken = pad;
      else if (pad && typeof pad === "object" && typeof (pad as { content?: unknown }).content === "string")
        padToken = (pad as { content: string }).content;
      const max = json.model_max_length;
      if (typeof max === "number" && max > 0 && max < 10_000) maxLength = max;
    }
    return new ClipTokenizer({ vocab, merges, padToken, maxLength });
  }

  private bpe(token: string): string[] {
    const cached = this.cache.get(token);
    if (cached) return cached;
    const chars = Array.from(token);
    let word = [...chars.slice(0, -1), `${chars[chars.length - 1]}</w>`];
    while (word.length > 1) {
      let best = -1;
      let bestRank = Number.POSITIVE_INFINITY;
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const first = word[best] as string;
      const second = word[best + 1] as string;
      // Merge every occurrence of the pair, left to right (as the reference implementation does).
      const merged: string[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i++;
        } else merged.push(word[i] as string);
      }
      word = merged;
    }
    this.cache.set(token, word);
    return word;
  }

  /** Token ids without BOS/EOS or padding. Unknown pieces map to EOS (CLIP's unk token). */
  encode(text: string): number[] {
    const clean = decodeEntities(decodeEntities(text)).replace(/\s+/g, " ").trim().toLowerCase();
    const ids: number[] = [];
    for (const match of clean.matchAll(PATTERN)) {
      const bytes = new TextEncoder().encode(match[0]);
      const mapped = Array.from(bytes, (b) => this.byteEncoder[b] as string).join("");
      const pieces = match[0] === BOS || match[0] === EOS ? [match[0]] : this.bpe(mapped);
      for (const piece of pieces) ids.push(this.encoder.get(piece) ?? this.eosId);
    }
    return ids;
  }

  /** BOS + ids (truncated) + EOS, padded to maxLength, as the text encoder wants them. */
  tokenize(text: string): number[] {
    const ids = this.encode(text).slice(0, this.maxLength - 2);
    const out = [this.bosId, ...ids, this.eosId];
    while (out.length < this.maxLength) out.push(this.padId);
    return out;
  }

  decode(ids: readonly number[]): string {
    const decoder = new Map<number, string>();
    for (const [k, v] of this.encoder) decoder.set(v, k);
    const byteDecoder = new Map<string, number>();
    this.byteEncoder.forEach((ch, b) => {
      byteDecoder.set(ch, b);
    });
    const text = ids.map((id) => decoder.get(id) ?? "").join("");
    const bytes = Array.from(text.replace(/<\/w>/g, " "), (ch) => byteDecoder.get(ch) ?? 32);
    return new TextDecoder().decode(Uint8Array.from(bytes)).trim();
  }
}
