/**
 * Caption tokenization as pycocoevalcap applies it before BLEU and CIDEr-D (`PTBTokenizer`):
 * Stanford CoreNLP's Penn Treebank tokenizer with `-lowerCase`, then every token in its
 * punctuation list dropped. CoreNLP is Java; this is the part of its rules that captions meet:
 *
 * - lower case; `;` `?` `!` `"` `` ` `` and brackets are tokens of their own, and so are `,` and
 *   `:` except between digits (1,000 and 3:30 stay whole), `...` and `--`;
 * - a final `.` is split off unless the word is an acronym (`u.s.`) or a common abbreviation
 *   (`mr.`, `st.`, …); inner periods (3.5, e.g) and hyphens (t-shirt) stay;
 * - clitics are split as in the Treebank: `dog's` → `dog 's`, `isn't` → `is n't`, `cannot` →
 *   `can not`, `gonna` → `gon na`; `$` and `#` before and `%` and `'` after a word are tokens;
 * - brackets become `-LRB-` `-RRB-` `-LSB-` `-RSB-` `-LCB-` `-RCB-`.
 *
 * Then the tokens pycocoevalcap removes go: quotes, round and curly brackets, `.` `?` `!` `,` `:`
 * `;` `-` `--` `...` (square brackets stay, as `-LSB-`, as there).
 */

/** pycocoevalcap's `PUNCTUATIONS`, removed after tokenization. */
const REMOVED = new Set(["''", "'", '``', '`', '-LRB-', '-RRB-', '-LCB-', '-RCB-', '.', '?', '!', ',', ':', '-', '--', '...', ';']);

/** How the Treebank writes brackets and double quotes (an opening `"` is ``` `` ```, a closing one `''`: both go). */
const SYMBOLS = new Map(Object.entries({ '(': '-LRB-', ')': '-RRB-', '[': '-LSB-', ']': '-RSB-', '{': '-LCB-', '}': '-RCB-', '"': "''" }));

/** Words whose final period belongs to them (CoreNLP's list is longer; these are the ones captions use). */
const ABBREVIATIONS = new Set(['mr.', 'mrs.', 'ms.', 'dr.', 'st.', 'jr.', 'sr.', 'mt.', 'ft.', 'vs.', 'etc.', 'inc.', 'co.', 'corp.', 'ltd.', 'no.']);

/** Words the Treebank splits in two although they have no apostrophe. */
const FUSED = new Map(
  Object.entries({ cannot: ['can', 'not'], gonna: ['gon', 'na'], gotta: ['got', 'ta'], wanna: ['wan', 'na'], gimme: ['gim', 'me'], lemme: ['lem', 'me'] }),
);

const CLITIC = /^(.+?)(n't|'s|'m|'d|'re|'ve|'ll)$/;

/** Splits off the tokens that never join a word (see the file comment). */
function separate(text: string): string {
  return text
    .replace(/\.{3,}/g, ' ... ')
    .replace(/--+/g, ' -- ')
    .replace(/[;?!"`()[\]{}]/g, ' $& ')
    .replace(/(?<!\d)[,:]|[,:](?!\d)/g, ' $& ');
}

function wordTokens(chunk: string): string[] {
  const before: string[] = [];
  const after: string[] = [];
  let word = chunk;
  while (word.length > 1 && (word.startsWith('$') || word.startsWith('#'))) {
    before.push(word[0]!);
    word = word.slice(1);
  }
  // A leading apostrophe is a quote, except in a clitic of its own ('s) and in '90s and 'em.
  if (word.length > 1 && word.startsWith("'") && !/^'(s|m|d|re|ve|ll|\d+s?|em|tis)$/.test(word)) {
    before.push("'");
    word = word.slice(1);
  }
  for (;;) {
    if (word.length > 1 && (word.endsWith('%') || (word.endsWith("'") && !word.endsWith("''")))) {
      after.unshift(word.at(-1)!);
      word = word.slice(0, -1);
    } else if (word.length > 1 && word.endsWith('.') && !ABBREVIATIONS.has(word) && !/^(?:[a-z]\.)+$/.test(word)) {
      after.unshift('.');
      word = word.slice(0, -1);
    } else {
      break;
    }
  }
  const fused = FUSED.get(word);
  const clitic = CLITIC.exec(word);
  const middle = fused ? [...fused] : clitic && clitic[1] !== "'" ? [clitic[1]!, clitic[2]!] : [word];
  return [...before, ...middle, ...after];
}

/** `sentence` as pycocoevalcap's tokenizer leaves it: lower-case PTB tokens without punctuation. */
export function ptbTokenize(sentence: string): string[] {
  return separate(sentence.toLowerCase())
    .split(/\s+/)
    .filter((chunk) => chunk !== '')
    .flatMap((chunk) => (SYMBOLS.has(chunk) ? [SYMBOLS.get(chunk)!] : wordTokens(chunk)))
    .filter((token) => !REMOVED.has(token));
}
