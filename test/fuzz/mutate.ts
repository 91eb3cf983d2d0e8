/**
 * Seeded mutations of valid files: each case applies one to three of the mutators below, chosen
 * and parameterised by a PRNG, to one seed. Together they reach what real corruption and crafted
 * files look like: flipped bits, overwritten bytes, cut and extended files, length fields set to
 * boundary values, spliced-in parts of other files, duplicated and deleted chunks, and long runs
 * of one byte pattern (deep nesting, long opcode runs).
 */
import type { Rng } from '../helpers/random.js';

export interface Mutated {
  bytes: Uint8Array;
  /** What was done, for reports: `bitFlip@123 + truncate@4567`. */
  description: string;
}

interface MutationContext {
  rng: Rng;
  /** Other seeds of the target, for splices. */
  donors: readonly Uint8Array[];
  /** The target's dictionary: byte strings worth inserting. */
  dictionary: readonly Uint8Array[];
}

type Mutator = (bytes: Uint8Array, context: MutationContext) => Mutated;

/** Largest run one mutation inserts: enough for nesting 4,000 deep or 100,000 repeated opcodes. */
const MAX_RUN_BYTES = 120_000;

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x0a, 0x22, 0x5b, 0x7b];

function randomInt(rng: Rng, below: number): number {
  return Math.floor(rng() * below);
}

function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[randomInt(rng, items.length)]!;
}

/** A position, biased towards the start, where headers and length fields live. */
function position(rng: Rng, length: number): number {
  if (length === 0) return 0;
  return rng() < 0.5 ? randomInt(rng, Math.min(length, 512)) : randomInt(rng, length);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** Integers a length or count field might be set to, given the file length. */
function interestingIntegers(rng: Rng, length: number): bigint[] {
  return [
    0n,
    1n,
    BigInt(length),
    BigInt(length + 1),
    BigInt(Math.max(0, length - 1)),
    0x7fn,
    0xffn,
    0x7fffn,
    0xffffn,
    0x7fffffffn,
    0xffffffffn,
    2n ** 32n,
    2n ** 53n,
    2n ** 63n - 1n,
    2n ** 64n - 1n,
    BigInt(randomInt(rng, 2 ** 31)),
    BigInt(randomInt(rng, 4096)),
  ];
}

/** What `repeatRun` repeats: a dictionary token, or one to three bytes of the file. */
function runPattern(bytes: Uint8Array, rng: Rng, dictionary: readonly Uint8Array[]): Uint8Array {
  const token = dictionary.length && rng() < 0.6 ? pick(rng, dictionary) : undefined;
  if (token?.length) return token;
  if (bytes.length === 0) return new Uint8Array([randomInt(rng, 256)]);
  const at = randomInt(rng, bytes.length);
  return bytes.subarray(at, at + 1 + randomInt(rng, 3));
}

const mutators: Record<string, Mutator> = {
  bitFlip(bytes, { rng }) {
    const out = bytes.slice();
    const flips = 1 + randomInt(rng, 8);
    const at = position(rng, out.length);
    for (let i = 0; i < flips && out.length > 0; i++) {
      const index = Math.min(out.length - 1, at + randomInt(rng, 64));
      out[index]! ^= 1 << randomInt(rng, 8);
    }
    return { bytes: out, description: `bitFlip@${at}` };
  },

  byteSet(bytes, { rng }) {
    const out = bytes.slice();
    const at = position(rng, out.length);
    const count = 1 + randomInt(rng, 4);
    for (let i = 0; i < count && at + i < out.length; i++) {
      out[at + i] = rng() < 0.7 ? pick(rng, INTERESTING_BYTES) : randomInt(rng, 256);
    }
    return { bytes: out, description: `byteSet@${at}` };
  },

  truncate(bytes, { rng }) {
    const at = rng() < 0.3 ? position(rng, bytes.length) : randomInt(rng, bytes.length + 1);
    return { bytes: bytes.slice(0, at), description: `truncate@${at}` };
  },

  extend(bytes, { rng }) {
    const count = 1 + randomInt(rng, 4096);
    const tail = rng() < 0.5 ? new Uint8Array(count) : Uint8Array.from({ length: count }, () => randomInt(rng, 256));
    return { bytes: concat(bytes, tail), description: `extend+${count}` };
  },

  lengthField(bytes, { rng }) {
    const out = bytes.slice();
    const width = pick(rng, [1, 2, 4, 8]);
    if (out.length < width) return { bytes: out, description: 'lengthField(too short)' };
    const at = Math.min(position(rng, out.length), out.length - width);
    const value = pick(rng, interestingIntegers(rng, bytes.length)) & ((1n << BigInt(8 * width)) - 1n);
    const littleEndian = rng() < 0.8;
    for (let i = 0; i < width; i++) {
      const byte = Number((value >> BigInt(8 * i)) & 0xffn);
      out[littleEndian ? at + i : at + width - 1 - i] = byte;
    }
    return { bytes: out, description: `lengthField${width * 8}${littleEndian ? 'le' : 'be'}@${at}=${value}` };
  },

  splice(bytes, { rng, donors }) {
    const donor = pick(rng, donors.length ? donors : [bytes]);
    const from = position(rng, donor.length);
    const piece = donor.subarray(from, from + 1 + randomInt(rng, 256));
    const at = position(rng, bytes.length);
    const replace = rng() < 0.5 ? piece.length : 0;
    return {
      bytes: concat(bytes.subarray(0, at), piece, bytes.subarray(Math.min(bytes.length, at + replace))),
      description: `splice@${at}(${piece.length})`,
    };
  },

  duplicateChunk(bytes, { rng }) {
    const at = position(rng, bytes.length);
    const chunk = bytes.subarray(at, at + 1 + randomInt(rng, 1024));
    const times = 1 + randomInt(rng, 4);
    const copies = Array.from({ length: times }, () => chunk);
    return { bytes: concat(bytes.subarray(0, at), ...copies, bytes.subarray(at)), description: `duplicate@${at}(${chunk.length}×${times})` };
  },

  deleteChunk(bytes, { rng }) {
    const at = position(rng, bytes.length);
    const count = 1 + randomInt(rng, 256);
    return { bytes: concat(bytes.subarray(0, at), bytes.subarray(at + count)), description: `delete@${at}(${count})` };
  },

  repeatRun(bytes, { rng, dictionary }) {
    const unit = runPattern(bytes, rng, dictionary);
    const times = Math.max(1, Math.floor((rng() < 0.5 ? 64 : MAX_RUN_BYTES) * rng() / unit.length));
    const run = new Uint8Array(unit.length * times);
    for (let i = 0; i < times; i++) run.set(unit, i * unit.length);
    const at = position(rng, bytes.length);
    return { bytes: concat(bytes.subarray(0, at), run, bytes.subarray(at)), description: `repeat@${at}(${unit.length}×${times})` };
  },

  insertToken(bytes, { rng, dictionary }) {
    if (!dictionary.length) return mutators['byteSet']!(bytes, { rng, dictionary, donors: [] });
    const token = pick(rng, dictionary);
    const at = position(rng, bytes.length);
    const overwrite = rng() < 0.5;
    const rest = bytes.subarray(Math.min(bytes.length, overwrite ? at + token.length : at));
    return { bytes: concat(bytes.subarray(0, at), token, rest), description: `token@${at}(${token.length})` };
  },
};

export const MUTATOR_NAMES = Object.keys(mutators);

/** One to three mutations of `seed`, all decided by `rng`. */
export function mutate(seed: Uint8Array, context: MutationContext): Mutated {
  let bytes = seed;
  const steps: string[] = [];
  const count = 1 + randomInt(context.rng, 3);
  for (let i = 0; i < count; i++) {
    const name = pick(context.rng, MUTATOR_NAMES);
    const result = mutators[name]!(bytes, context);
    bytes = result.bytes;
    steps.push(result.description);
  }
  return { bytes, description: steps.join(' + ') };
}
