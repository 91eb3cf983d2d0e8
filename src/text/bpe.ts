/**
 * OFA's tokenizer: GPT-2 byte-level BPE followed by the fairseq dictionary that OFA trained with
 * (ofa-arch.md §2). Text → UTF-8 bytes → printable "byte characters" → pre-tokens (GPT-2 regex)
 * → BPE merges by rank → GPT-2 ids → fairseq ids (line index of dict.txt + 4).
 *
 * `OfaTokenizer.load` reads the three files from a path or a URL (`io/location.ts`: `node:fs` only
 * when reading from disk), so the same code loads in browsers.
 */
import { TOKENIZER_FILES } from '../assets.js';
import { type FileLocation, FileReadError, childOf, locationLabel, readText } from '../io/location.js';

export const BOS_ID = 0;
export const PAD_ID = 1;
export const EOS_ID = 2;
export const UNK_ID = 3;
/** fairseq places the dictionary lines right after the four specials. */
const FIRST_DICT_ID = 4;
/** Lines in OFA's `utils/BPE/dict.txt`: 50,257 GPT-2 ids plus three `madeupwordNNNN` fillers. */
const DICT_ENTRY_COUNT = 50260;
export const MASK_ID = FIRST_DICT_ID + DICT_ENTRY_COUNT; // 50264
export const CODE_COUNT = 8192;
export const FIRST_CODE_ID = MASK_ID + 1; // 50265
export const BIN_COUNT = 1000;
export const FIRST_BIN_ID = FIRST_CODE_ID + CODE_COUNT; // 58457
export const OFA_VOCAB_SIZE = FIRST_BIN_ID + BIN_COUNT; // 59457

const SPECIAL_SYMBOLS = ['<s>', '<pad>', '</s>', '<unk>'] as const;

/**
 * GPT-2's pre-tokenizer. The original runs on Python's `regex` module, whose `\s` is exactly
 * the Unicode White_Space property; JavaScript's `\s` differs (it adds U+FEFF and lacks U+0085),
 * so White_Space is spelled out.
 */
const PRE_TOKEN_PATTERN =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

/**
 * Pre-tokens repeat a lot in real text, so their ids are memoised; the bound keeps a
 * long-running process from growing without limit on adversarial input.
 */
const MAX_CACHED_PRE_TOKENS = 50_000;

/**
 * GPT-2's reversible byte → character table: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order, so every BPE token is a printable, space-free string.
 */
function buildByteToChar(): string[] {
  const isPrintable = (byte: number): boolean =>
    (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
  const table = new Array<string>(256);
  let nextSubstitute = 256;
  for (let byte = 0; byte < 256; byte++) {
    table[byte] = String.fromCodePoint(isPrintable(byte) ? byte : nextSubstitute++);
  }
  return table;
}

const BYTE_TO_CHAR = buildByteToChar();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((char, byte) => [char, byte]));
const utf8Encoder = new TextEncoder();

export interface OfaTokenizerFiles {
  /** GPT-2 `encoder.json`: BPE token string → GPT-2 id. */
  encoderJson: string;
  /** GPT-2 `vocab.bpe`: merges in rank order, one `left right` pair per line. */
  vocabBpe: string;
  /** fairseq `dict.txt`: one `symbol count` line per dictionary entry, symbol = GPT-2 id. */
  dictTxt: string;
}

export class OfaTokenizer {
  readonly vocabSize: number = OFA_VOCAB_SIZE;

  /** fairseq id → symbol: the byte-level BPE string for GPT-2 tokens, the literal otherwise. */
  private readonly symbols: readonly string[];
  /** Whether the symbol of an id is byte-level BPE text (decoded through CHAR_TO_BYTE). */
  private readonly isByteLevel: Uint8Array;
  private readonly merges: MergeTable;
  /** fairseq id of each BPE token number of `merges` (<unk> for a token the dictionary lacks). */
  private readonly idOfToken: Int32Array;
  private readonly preTokenCache = new Map<string, readonly number[]>();

  private constructor(
    symbols: readonly string[],
    isByteLevel: Uint8Array,
    idOfBpeToken: ReadonlyMap<string, number>,
    merges: MergeTable,
  ) {
    this.symbols = symbols;
    this.isByteLevel = isByteLevel;
    this.merges = merges;
    // fairseq maps a BPE token that its dictionary lacks to <unk>; with OFA's files every
    // GPT-2 token is in the dictionary, so this only matters for foreign vocabularies.
    this.idOfToken = Int32Array.from(merges.tokens, (token) => idOfBpeToken.get(token) ?? UNK_ID);
  }

  /**
   * Reads `encoder.json`, `vocab.bpe` and `dict.txt` from `dir`, a path or a URL (default: the
   * shipped `weights/ofa-bpe`, beside the package or the page's bundle).
   */
  static async load(dir: FileLocation = TOKENIZER_FILES): Promise<OfaTokenizer> {
    const read = async (name: string): Promise<string> => {
      const location = childOf(dir, name);
      try {
        return await readText(location);
      } catch (error) {
        const reason = error instanceof FileReadError ? error.reason : (error as Error).message;
        throw new Error(`OfaTokenizer: cannot read ${name} at ${locationLabel(location)}: ${reason}`);
      }
    };
    // One after another, so that a missing directory always reports the same first file.
    const encoderJson = await read('encoder.json');
    const vocabBpe = await read('vocab.bpe');
    const dictTxt = await read('dict.txt');
    return OfaTokenizer.fromFiles({ encoderJson, vocabBpe, dictTxt });
  }

  /** Builds the tokenizer from the three files' contents (for browsers, or bundled vocabularies). */
  static fromFiles(files: OfaTokenizerFiles): OfaTokenizer {
    const gpt2IdToToken = parseEncoderJson(files.encoderJson);
    const merges = new MergeTable(files.vocabBpe);
    const dictSymbols = parseDict(files.dictTxt);

    const symbols = new Array<string>(OFA_VOCAB_SIZE);
    const isByteLevel = new Uint8Array(OFA_VOCAB_SIZE);
    const idOfBpeToken = new Map<string, number>();
    SPECIAL_SYMBOLS.forEach((symbol, id) => (symbols[id] = symbol));
    dictSymbols.forEach((symbol, line) => {
      const id = FIRST_DICT_ID + line;
      // fairseq's GPT-2 dictionary writes GPT-2 ids as decimal strings; anything else
      // (OFA's `madeupwordNNNN` padding entries) is a plain literal symbol.
      const token = /^\d+$/.test(symbol) ? gpt2IdToToken.get(Number(symbol)) : undefined;
      if (token === undefined) {
        symbols[id] = symbol;
      } else {
        symbols[id] = token;
        isByteLevel[id] = 1;
        idOfBpeToken.set(token, id);
      }
    });
    symbols[MASK_ID] = '<mask>';
    for (let i = 0; i < CODE_COUNT; i++) symbols[FIRST_CODE_ID + i] = `<code_${i}>`;
    for (let i = 0; i < BIN_COUNT; i++) symbols[FIRST_BIN_ID + i] = `<bin_${i}>`;
    return new OfaTokenizer(symbols, isByteLevel, idOfBpeToken, merges);
  }

  /** fairseq ids of `text`, without BOS/EOS. Leading spaces matter: `" no"` ≠ `"no"`. */
  encode(text: string): number[] {
    const surrogate = /\p{Cs}/u.exec(text);
    if (surrogate !== null) {
      throw new Error(`OfaTokenizer.encode: unpaired UTF-16 surrogate at index ${surrogate.index}; text must be valid Unicode`);
    }
    const ids: number[] = [];
    for (const [preToken] of text.matchAll(PRE_TOKEN_PATTERN)) {
      for (const id of this.encodePreToken(preToken)) ids.push(id);
    }
    return ids;
  }

  /** `[BOS, ...encode(text), EOS]`, the form OFA's encoder consumes. */
  encodeWithSpecials(text: string): number[] {
    return [BOS_ID, ...this.encode(text), EOS_ID];
  }

  /**
   * Text of `ids`. BOS, EOS and padding are dropped; `<unk>`, `<mask>`, `<code_i>`, `<bin_i>`
   * come out as those literal strings, as fairseq's GPT-2 decoder passes them through.
   * Invalid UTF-8 (a sequence cut between tokens) becomes U+FFFD, like fairseq's `errors="replace"`.
   */
  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      this.checkId(id);
      if (id === BOS_ID || id === EOS_ID || id === PAD_ID) continue;
      const symbol = this.symbols[id]!;
      if (this.isByteLevel[id] === 1) {
        for (const char of symbol) bytes.push(CHAR_TO_BYTE.get(char)!);
      } else {
        for (const byte of utf8Encoder.encode(symbol)) bytes.push(byte);
      }
    }
    // ignoreBOM: a U+FEFF the text began with is content, not a byte-order mark to strip.
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(new Uint8Array(bytes));
  }

  /** The vocabulary symbol of `id`: byte-level BPE text (e.g. `"Ġthe"`) or a literal such as `"<bin_3>"`. */
  token(id: number): string {
    this.checkId(id);
    return this.symbols[id]!;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= OFA_VOCAB_SIZE) {
      throw new RangeError(`OfaTokenizer: token id ${id} is not an integer in [0, ${OFA_VOCAB_SIZE - 1}]`);
    }
  }

  private encodePreToken(preToken: string): readonly number[] {
    const cached = this.preTokenCache.get(preToken);
    if (cached !== undefined) return cached;

    // The merge table numbers the byte characters 0–255 by byte: a word's bytes are its tokens.
    const ids = this.applyMerges(utf8Encoder.encode(preToken)).map((token) => this.idOfToken[token]!);

    if (this.preTokenCache.size >= MAX_CACHED_PRE_TOKENS) this.preTokenCache.clear();
    this.preTokenCache.set(preToken, ids);
    return ids;
  }

  /**
   * GPT-2's merge loop: repeatedly find the lowest-ranked adjacent pair and merge all its
   * occurrences, left to right. Rescanning the word for every merge is quadratic in its length
   * (a 30,000-letter pre-token would take seconds), so the word is a linked list of tokens and
   * each adjacent pair waits, by its left position, in the bucket of its rank; a heap orders the
   * ranks. Work is O(n log n).
   *
   * It yields GPT-2's tokens exactly: a rank's positions are merged left to right, and a position
   * whose pair has changed since it was queued (an earlier merge took a token of it: "aaa" →
   * "aa a") is skipped; the pairs a merge creates join the buckets only once the rank is done,
   * as GPT-2 recomputes its pairs only after a full pass.
   */
  private applyMerges(bytes: Uint8Array): number[] {
    const tokens = Int32Array.from(bytes);
    const count = tokens.length;
    /** The next token's position; −1 at the end, −2 once merged into its left neighbour. */
    const next = Int32Array.from({ length: count }, (_, i) => (i + 1 < count ? i + 1 : -1));
    const previous = Int32Array.from({ length: count }, (_, i) => i - 1);
    const rankAt = (left: number): number | undefined =>
      next[left]! >= 0 ? this.merges.find(tokens[left]!, tokens[next[left]!]!)?.rank : undefined;

    const buckets = new Map<number, number[]>();
    const ranks = new MinHeap<number>((a, b) => a - b);
    const enqueue = (left: number): void => {
      const rank = rankAt(left);
      if (rank === undefined) return;
      const bucket = buckets.get(rank);
      if (bucket) bucket.push(left);
      else {
        buckets.set(rank, [left]);
        ranks.push(rank);
      }
    };
    for (let i = 0; i + 1 < count; i++) enqueue(i);

    const created: number[] = [];
    while (ranks.size > 0) {
      const rank = ranks.pop()!;
      const lefts = Int32Array.from(buckets.get(rank)!).sort();
      buckets.delete(rank);
      for (const left of lefts) {
        if (rankAt(left) !== rank) continue;
        const right = next[left]!;
        tokens[left] = this.merges.find(tokens[left]!, tokens[right]!)!.result;
        next[left] = next[right]!;
        if (next[left]! >= 0) previous[next[left]!] = left;
        next[right] = -2;
        if (previous[left]! >= 0) created.push(previous[left]!);
        created.push(left);
      }
      for (const left of created) enqueue(left);
      created.length = 0;
    }
    const merged: number[] = [];
    for (let i = count > 0 ? 0 : -1; i >= 0; i = next[i]!) merged.push(tokens[i]!);
    return merged;
  }
}

/**
 * `vocab.bpe` as numbers: every token a merge mentions is numbered (the 256 byte characters
 * first, in byte order, so that a word's UTF-8 bytes are its first tokens), and each merge
 * (left, right) has its rank and the number of the token it makes. A repeated pair keeps its
 * last rank, as GPT-2's `dict(zip(bpe_merges, range(len(bpe_merges))))` does.
 */
class MergeTable {
  /** Token number → its byte-level text. */
  readonly tokens: string[] = [...BYTE_TO_CHAR];
  private readonly numberOf = new Map<string, number>(BYTE_TO_CHAR.map((char, byte) => [char, byte]));
  /**
   * By left token, then right token. (One map keyed by `left · count + right` would need keys
   * beyond V8's small integers, which it looks up many times slower.)
   */
  private readonly merges = new Map<number, Map<number, { rank: number; result: number }>>();

  constructor(vocabBpe: string) {
    let rank = 0;
    vocabBpe.split('\n').forEach((rawLine, index) => {
      const line = rawLine.replace(/\r$/, '');
      if (line === '' || (index === 0 && line.startsWith('#version'))) return;
      const pair = line.split(' ');
      if (pair.length !== 2 || pair[0] === '' || pair[1] === '') {
        throw new Error(`OfaTokenizer: vocab.bpe line ${index + 1} is ${JSON.stringify(line)}, expected "left right"`);
      }
      const [left, right] = pair as [string, string];
      const first = this.number(left);
      let byRight = this.merges.get(first);
      if (byRight === undefined) this.merges.set(first, (byRight = new Map()));
      byRight.set(this.number(right), { rank: rank++, result: this.number(left + right) });
    });
  }

  find(left: number, right: number): { rank: number; result: number } | undefined {
    return this.merges.get(left)?.get(right);
  }

  private number(token: string): number {
    let number = this.numberOf.get(token);
    if (number === undefined) {
      number = this.tokens.push(token) - 1;
      this.numberOf.set(token, number);
    }
    return number;
  }
}

/** A binary min-heap. */
class MinHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly before: (a: T, b: T) => number) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const items = this.items;
    let i = items.push(item) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.before(items[parent]!, item) <= 0) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = item;
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= items.length) break;
      if (child + 1 < items.length && this.before(items[child + 1]!, items[child]!) < 0) child++;
      if (this.before(last, items[child]!) <= 0) break;
      items[i] = items[child]!;
      i = child;
    }
    items[i] = last;
    return top;
  }
}

function parseEncoderJson(encoderJson: string): Map<number, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(encoderJson);
  } catch (error) {
    throw new Error(`OfaTokenizer: encoder.json is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error('OfaTokenizer: encoder.json must be an object mapping BPE tokens to ids');
  }
  const tokenOfId = new Map<number, string>();
  for (const [token, id] of Object.entries(parsed)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new Error(`OfaTokenizer: encoder.json maps ${JSON.stringify(token)} to ${JSON.stringify(id)}, not a non-negative integer`);
    }
    tokenOfId.set(id, token);
  }
  return tokenOfId;
}

function parseDict(dictTxt: string): string[] {
  const symbols: string[] = [];
  dictTxt.split('\n').forEach((rawLine, index) => {
    const line = rawLine.replace(/\r$/, '');
    if (line === '') return;
    const fields = line.split(' ');
    if (fields.length !== 2 || fields[0] === '' || !/^\d+$/.test(fields[1]!)) {
      throw new Error(`OfaTokenizer: dict.txt line ${index + 1} is ${JSON.stringify(line)}, expected "symbol count"`);
    }
    symbols.push(fields[0]!);
  });
  if (symbols.length !== DICT_ENTRY_COUNT) {
    throw new Error(
      `OfaTokenizer: dict.txt has ${symbols.length} entries; OFA's has ${DICT_ENTRY_COUNT}, ` +
        'and <mask>, <code_i> and <bin_i> ids depend on that count',
    );
  }
  return symbols;
}

/** Python's `str.isspace()` set, which `re`'s `\s` uses: White_Space plus U+001C..U+001F. */
const PYTHON_WHITESPACE_RUN = /[\p{White_Space}\u001c-\u001f]{2,}/gu;

/**
 * OFA's `pre_caption` (ofa-arch.md §7.3), applied to captions and SNLI-VE hypotheses: lowercase,
 * strip leading `,.!?*#:;~`, `-` and `/` → space, `<person>` → `person`, runs of two or more
 * whitespace characters → one space, strip trailing newlines and surrounding spaces, keep the
 * first `maxWords` space-separated words. A lone tab or newline inside the text survives, as in OFA.
 */
export function preCaption(text: string, maxWords: number): string {
  if (!Number.isInteger(maxWords) || maxWords < 0) {
    throw new RangeError(`preCaption: maxWords must be a non-negative integer, got ${maxWords}`);
  }
  const caption = text
    .toLowerCase()
    .replace(/^[,.!?*#:;~]+/, '')
    .replaceAll('-', ' ')
    .replaceAll('/', ' ')
    .replaceAll('<person>', 'person')
    .replace(PYTHON_WHITESPACE_RUN, ' ')
    .replace(/\n+$/, '')
    .replace(/^ +| +$/g, '');
  const words = caption.split(' ');
  return words.length > maxWords ? words.slice(0, maxWords).join(' ') : caption;
}
